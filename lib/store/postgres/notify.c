/* SPDX-License-Identifier: MIT */
/*
 * Changes made by other nodes (store.h, set_notify): LISTEN/NOTIFY, sent after the commit.
 *
 * Sending. A statement that changes a login request's state returns the ids it changed
 * (statements.c, NOTIFY), as do a device revocation ("-<device id>") and a new notice
 * (qrl_notice_key of its account). Once the change has committed, the ids are queued for this
 * node's one notify thread, which sends whatever is queued as one `SELECT pg_notify('qrlogin',
 * payload)` on its own connection, where synchronous_commit is off: the ids in decimal,
 * comma-separated ("17,-4,9"), several payloads when they would not fit one (PostgreSQL takes
 * fewer than 8000 bytes), all in one transaction. The first id queued wakes the thread (a byte
 * on a pipe it polls), so an idle node adds no delay; while it sends, the ids of other commits
 * queue up and go together in the next statement.
 *
 * Why not pg_notify inside the writes' own transactions: a transaction that has notified takes
 * one lock for the whole cluster at its commit and holds it until the commit has ended, WAL
 * flush included, so every notifying commit of every node waits for the flushes of those before
 * it, one at a time, and the flushes of state changes are never shared. Here only the notify
 * threads take that lock, for commits that wait for no flush.
 *
 * The price: a change is told to the other nodes a moment after its commit instead of with it,
 * and a node that dies between the two (or whose thread is stopped at close while the database
 * cannot be reached) never tells it. The requests held on other nodes for that change
 * then learn of it at their next read: when their hold ends (at most 60 s, QRL_MAX_WAIT_S), or
 * at the "0" of a listener that connects again. Nothing is decided on a notification: it only
 * wakes a request that then reads the database. This node's own held requests are woken by the
 * core directly (qrl_config.on_change), as before. A NOTIFY that fails (the connection broke) is
 * sent again once the thread has connected again; ids that pile up beyond QUEUE_MAX meanwhile
 * are replaced by one "0", which wakes every held request of every node.
 *
 * Receiving. The same thread's connection LISTENs on the channel once a hook is installed; the
 * thread waits on its socket (poll) and calls the hook for each id of each notification: the
 * core then wakes the requests held for that id, as if the change had been made here. A node
 * also hears its own changes; the core has reported those already, and a second report only
 * makes a held request read its state once more (store.h allows it). One connection per node
 * for both, because every node's connections count against the database's max_connections.
 *
 * What a node does not hear it must not wait for. When the listening connection drops (the
 * database restarted, a network fault, an operator's pg_terminate_backend), notifications sent
 * meanwhile are lost. The thread connects again, with a pause that doubles from 100 ms to 5 s
 * between failed attempts (sending what it could not send before), LISTENs again, and then
 * calls the hook with 0, which means "anything may have changed": the server wakes every held
 * request, and each reads its state again (server.c, qrl_server_on_change). The first LISTEN is followed by a 0 too, for the
 * changes made between set_notify and that LISTEN.
 *
 * Lifecycle: the thread starts with the first set_notify that installs a hook or the first
 * change to tell, whichever comes first (a store opened for a command line tool that changes
 * nothing never starts it), and stops at close, after sending what is queued if it can. The
 * hook is called with the listener's mutex held, which set_notify takes too: once
 * set_notify(NULL) returns, the old hook is never called again (store.h). The hook must not
 * call the store (store.h), so holding the mutex across it cannot deadlock.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "pg_internal.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 5000
/* PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. */
#define PAYLOAD_MAX 7999
/* A decimal int64 with its sign, and the comma before it. */
#define ID_TEXT_MAX 21
/* Ids queued at most while the thread cannot send (a few per login): past that, one "0". */
#define QUEUE_MAX 65536

/* The payloads, separated by ';', in one statement and one transaction: one take of the
 * notification lock however many there are. */
#define NOTIFY_FROM " unnest(string_to_array($1, ';')) p"
static const char NOTIFY_SQL[] =
    "SELECT count(pg_notify('" QRL__PG_CHANNEL "', p)) FROM" NOTIFY_FROM;
/* The same on a pooled connection (when the thread could not be started): committed without
 * waiting for a flush, as on the thread's own connection. */
static const char NOTIFY_LAZY_SQL[] =
    "WITH lazy AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) "
    "SELECT count(pg_notify('" QRL__PG_CHANNEL "', p)) FROM lazy," NOTIFY_FROM;

/* Ids not sent yet, on the thread's side. */
struct batch {
    int64_t *ids;
    size_t n, cap;
    int lost; /* some were dropped: "0" goes instead */
};

void qrl__pg_listener_init(pg_store *s)
{
    pthread_mutex_init(&s->listen.mu, NULL);
    pthread_mutex_init(&s->notifier.mu, NULL);
    s->listen.wake[0] = s->listen.wake[1] = -1;
}

static void deliver(pg_store *s, int64_t id)
{
    pthread_mutex_lock(&s->listen.mu);
    if (s->listen.fn != NULL)
        s->listen.fn(s->listen.ud, id);
    pthread_mutex_unlock(&s->listen.mu);
}

/* One notification's payload: change ids in decimal, comma-separated (qrl__pg_payloads), each
 * given to the hook; what is not a number is skipped. A node older than the batches sends one
 * id, which reads the same. */
static void deliver_payload(pg_store *s, const char *p)
{
    pthread_mutex_lock(&s->listen.mu);
    while (*p != '\0') {
        char *end;
        long long v;
        errno = 0;
        v = strtoll(p, &end, 10);
        if (errno == 0 && end != p && (*end == ',' || *end == '\0') && s->listen.fn != NULL)
            s->listen.fn(s->listen.ud, (int64_t)v);
        p = end + strcspn(end, ",");
        if (*p == ',')
            p++;
    }
    pthread_mutex_unlock(&s->listen.mu);
}

/* Waits until `fd` is readable or the wake pipe has a byte (read here), for at most timeout_ms
 * (-1: no limit). Returns 1 fd readable, 0 woken or timed out, -1 asked to stop. */
static int wait_for(pg_store *s, int fd, int timeout_ms)
{
    struct pollfd pfd[2] = {{.fd = s->listen.wake[0], .events = POLLIN},
                            {.fd = fd, .events = POLLIN}};
    char drain[64];

    for (;;) {
        if (atomic_load(&s->listen.stop))
            return -1;
        int n = poll(pfd, fd >= 0 ? 2 : 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (atomic_load(&s->listen.stop))
            return -1;
        if (pfd[0].revents != 0)
            while (read(s->listen.wake[0], drain, sizeof drain) > 0)
                ;
        return n > 0 && fd >= 0 && pfd[1].revents != 0 ? 1 : 0;
    }
}

/* Waits ms, unless asked to stop (-1). Ids queued meanwhile wait too. */
static int pause_ms(pg_store *s, int ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left = ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            return 0;
        if (wait_for(s, -1, (int)left) < 0)
            return -1;
    }
}

static void wake(pg_store *s)
{
    (void)!write(s->listen.wake[1], "x", 1); /* a full pipe is a wake-up pending already */
}

/* --- payloads and the queue ------------------------------------------------------------- */

size_t qrl__pg_payloads(const int64_t *ids, size_t n, char *out, size_t cap)
{
    size_t len = 0, plen = 0; /* plen: the length of the payload being written */

    if (cap == 0)
        return 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char num[ID_TEXT_MAX + 1];
        int k = snprintf(num, sizeof num, "%" PRId64, ids[i]);
        size_t sep = plen > 0 ? 1 : 0;
        if (plen > 0 && plen + 1 + (size_t)k > PAYLOAD_MAX) {
            /* A new payload; the ';' between payloads is no part of either. */
            if (len + 1 >= cap)
                return 0;
            out[len++] = ';';
            plen = 0;
            sep = 0;
        }
        if (len + sep + (size_t)k >= cap)
            return 0;
        if (sep)
            out[len++] = ',';
        memcpy(out + len, num, (size_t)k);
        len += (size_t)k;
        plen += sep + (size_t)k;
    }
    out[len] = '\0';
    return len;
}

/* Appends ids to a queue (grown as needed). 0 when they were appended; -1 when the queue would
 * pass QUEUE_MAX or memory ran out: the caller sends "0" instead of the whole queue. */
static int queue_add(int64_t **q, size_t *n, size_t *cap, const int64_t *ids, size_t k)
{
    if (k == 0)
        return 0;
    if (*n + k > QUEUE_MAX)
        return -1;
    if (*n + k > *cap) {
        size_t ncap = *cap > 0 ? *cap : 64;
        while (ncap < *n + k)
            ncap *= 2;
        int64_t *nq = realloc(*q, ncap * sizeof *nq);
        if (nq == NULL)
            return -1;
        *q = nq;
        *cap = ncap;
    }
    memcpy(*q + *n, ids, k * sizeof *ids);
    *n += k;
    return 0;
}

/* Moves what is queued into the thread's batch (after what it could not send yet). */
static void take_queue(pg_store *s, struct batch *b)
{
    struct pg_notifier *nt = &s->notifier;

    pthread_mutex_lock(&nt->mu);
    if (nt->lost || (!b->lost && queue_add(&b->ids, &b->n, &b->cap, nt->q, nt->n) != 0)) {
        b->lost = 1;
        b->n = 0;
    }
    nt->n = 0;
    nt->lost = 0;
    pthread_mutex_unlock(&nt->mu);
}

/* The payloads of a batch ("0" alone when ids were lost), malloc'ed; NULL out of memory. */
static char *batch_text(const int64_t *ids, size_t n, int lost)
{
    static const int64_t anything = 0;
    size_t cap;
    char *text;

    if (lost) {
        ids = &anything;
        n = 1;
    }
    /* Each id with its comma, and a ';' per payload (at least PAYLOAD_MAX / ID_TEXT_MAX ids). */
    cap = n * ID_TEXT_MAX + n / (PAYLOAD_MAX / ID_TEXT_MAX) + 2;
    text = malloc(cap);
    if (text != NULL && qrl__pg_payloads(ids, n, text, cap) == 0 && n > 0) {
        free(text);
        text = NULL;
    }
    return text;
}

/* Runs a NOTIFY statement with the payloads `text`; 0 on success. */
static int notify_exec(PGconn *pg, const char *sql, const char *text, const char *prepared)
{
    const char *v[1] = {text};
    int len[1] = {(int)strlen(text)}, fmt[1] = {1};
    const Oid types[1] = {25 /* text */};
    PGresult *r = prepared != NULL ? PQexecPrepared(pg, prepared, 1, v, len, fmt, 1)
                                   : PQexecParams(pg, sql, 1, types, v, len, fmt, 1);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;

    PQclear(r);
    return ok ? 0 : -1;
}

/* Sends the batch on pg; 0 when it went out (or there was nothing to send: ids dropped for
 * lack of memory leave "0" for the next batch). */
static int batch_send(pg_store *s, PGconn *pg, struct batch *b)
{
    char *text;

    if (b->n == 0 && !b->lost)
        return 0;
    text = batch_text(b->ids, b->n, b->lost);
    if (text == NULL) {
        b->n = 0;
        b->lost = 1;
        return 0;
    }
    if (notify_exec(pg, NULL, text, "notify") != 0) {
        free(text);
        return -1;
    }
    free(text);
    atomic_fetch_add(&s->notifier.sent, 1);
    b->n = 0;
    b->lost = 0;
    return 0;
}

/* --- the thread ------------------------------------------------------------------------- */

/* Its connection: synchronous_commit off for the session (a NOTIFY decides nothing, and is
 * worth no wait for a flush), the NOTIFY prepared. NULL when it could not (said once per
 * outage). */
static PGconn *thread_connect(pg_store *s, int *said)
{
    char err[256];
    PGconn *pg = NULL;
    PGresult *r;

    if (qrl__pg_connect(s, CONNECT_TIMEOUT_MS, &pg, err, sizeof err) == QRL_OK) {
        const Oid types[1] = {25};
        int ok;
        r = PQexec(pg, "SET synchronous_commit = off");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (ok) {
            r = PQprepare(pg, "notify", NOTIFY_SQL, 1, types);
            ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
        }
        if (ok) {
            if (*said)
                qrl__pg_log("connected again: hearing and telling other nodes' changes");
            *said = 0;
            return pg;
        }
        qrl__pg_conn_message(pg, err, sizeof err);
        PQfinish(pg);
    }
    if (!*said)
        qrl__pg_log("cannot hear or tell other nodes' changes (%s); trying again", err);
    *said = 1;
    return NULL;
}

static int listen_on(PGconn *pg)
{
    PGresult *r = PQexec(pg, "LISTEN " QRL__PG_CHANNEL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

    PQclear(r);
    return ok ? 0 : -1;
}

/* Gives every notification libpq holds to the hook: those read by the last PQconsumeInput, and
 * those that arrived while the thread ran a statement of its own (LISTEN, a NOTIFY). */
static void deliver_notifications(pg_store *s, PGconn *pg)
{
    for (PGnotify *n; (n = PQnotifies(pg)) != NULL; PQfreemem(n))
        if (strcmp(n->relname, QRL__PG_CHANNEL) == 0)
            deliver_payload(s, n->extra);
}

static void connection_lost(PGconn **pg, const char *doing)
{
    char msg[256];

    qrl__pg_conn_message(*pg, msg, sizeof msg);
    qrl__pg_log("the connection for other nodes' changes was lost %s (%s); connecting again", doing,
                msg);
    PQfinish(*pg);
    *pg = NULL;
}

static void *listener_main(void *arg)
{
    pg_store *s = arg;
    PGconn *pg = NULL;
    struct batch b = {0};
    int backoff = 0, said = 0, listening = 0;

    while (!atomic_load(&s->listen.stop)) {
        if (pg == NULL) {
            if (backoff > 0 && pause_ms(s, backoff) < 0)
                break;
            backoff = backoff == 0 ? BACKOFF_FIRST_MS : backoff * 2;
            if (backoff > BACKOFF_MAX_MS)
                backoff = BACKOFF_MAX_MS;
            if ((pg = thread_connect(s, &said)) == NULL)
                continue;
            listening = 0;
        }
        if (atomic_load(&s->listen.hooked) && !listening) {
            if (listen_on(pg) != 0) {
                connection_lost(&pg, "on LISTEN");
                continue;
            }
            listening = 1;
            atomic_fetch_add(&s->listen.listens, 1);
            deliver(s, 0); /* whatever was missed: every held request looks again */
        }
        take_queue(s, &b);
        if (batch_send(s, pg, &b) != 0) {
            connection_lost(&pg, "sending");
            continue;
        }
        deliver_notifications(s, pg);
        backoff = 0;
        int w = wait_for(s, PQsocket(pg), -1);
        if (w < 0)
            break;
        if (w == 0)
            continue; /* ids to send, or a hook */
        if (!PQconsumeInput(pg) || PQstatus(pg) != CONNECTION_OK) {
            connection_lost(&pg, "while listening");
            backoff = BACKOFF_FIRST_MS;
            continue;
        }
        deliver_notifications(s, pg);
    }
    /* Closing: what is queued goes out if the database can be reached at once. */
    take_queue(s, &b);
    if ((b.n > 0 || b.lost) && pg == NULL)
        pg = thread_connect(s, &said);
    if (pg != NULL && batch_send(s, pg, &b) != 0)
        qrl__pg_log("cannot tell other nodes of the last changes; they see them at their next "
                    "read");
    PQfinish(pg);
    free(b.ids);
    return NULL;
}

/* Starts the thread, with listen.mu held; 0 when it runs. */
static int start_locked(pg_store *s)
{
    if (s->listen.started)
        return 0;
    if (s->listen.failed)
        return -1;
    if (pipe2(s->listen.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        s->listen.wake[0] = s->listen.wake[1] = -1;
    } else if (pthread_create(&s->listen.thread, NULL, listener_main, s) != 0) {
        close(s->listen.wake[0]);
        close(s->listen.wake[1]);
        s->listen.wake[0] = s->listen.wake[1] = -1;
    } else {
        s->listen.started = 1;
        return 0;
    }
    s->listen.failed = 1;
    qrl__pg_log("cannot start the thread for other nodes' changes: each write tells them on "
                "its own connection, and other nodes' changes are seen only when a held "
                "request times out");
    return -1;
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
    if (fn != NULL) {
        atomic_store(&s->listen.hooked, 1);
        if (start_locked(s) == 0) {
            wake(s); /* it LISTENs now if it ran already */
        } else {
            s->listen.fn = NULL;
            rc = QRL_ERR_STORE;
        }
    }
    pthread_mutex_unlock(&s->listen.mu);
    return rc;
}

void qrl__pg_listener_stop(pg_store *s)
{
    if (s->listen.started) {
        atomic_store(&s->listen.stop, 1);
        wake(s);
        pthread_join(s->listen.thread, NULL);
        s->listen.started = 0;
    }
    if (s->listen.wake[0] >= 0) {
        close(s->listen.wake[0]);
        close(s->listen.wake[1]);
    }
    s->listen.wake[0] = s->listen.wake[1] = -1;
    free(s->notifier.q);
    s->notifier.q = NULL;
    s->notifier.n = s->notifier.cap = 0;
    pthread_mutex_destroy(&s->notifier.mu);
    pthread_mutex_destroy(&s->listen.mu);
}

/* --- the writers' side ------------------------------------------------------------------ */

void qrl__pg_changed(struct pg_conn *c, int64_t id)
{
    if (c->store == NULL)
        return;
    if (PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
        qrl__pg_notify_post(c, &id, 1); /* the statement has committed by itself */
    } else if (c->nnotes < PG_CONN_NOTES) {
        c->notes[c->nnotes++] = id;
    } else {
        c->notes_lost = 1;
    }
}

void qrl__pg_notify_post(struct pg_conn *c, const int64_t *ids, size_t n)
{
    pg_store *s = c->store;
    struct pg_notifier *nt;
    int running, first;
    char *text;

    if (s == NULL || n == 0)
        return;
    running = atomic_load(&s->listen.started);
    if (!running) {
        pthread_mutex_lock(&s->listen.mu);
        running = start_locked(s) == 0;
        pthread_mutex_unlock(&s->listen.mu);
    }
    if (running) {
        nt = &s->notifier;
        pthread_mutex_lock(&nt->mu);
        first = nt->n == 0 && !nt->lost;
        if (!nt->lost && queue_add(&nt->q, &nt->n, &nt->cap, ids, n) != 0) {
            nt->lost = 1;
            nt->n = 0;
        }
        pthread_mutex_unlock(&nt->mu);
        if (first)
            wake(s); /* the thread takes everything queued when it wakes */
        return;
    }
    /* No thread: on the caller's connection, which has just committed. */
    text = batch_text(ids, n, 0);
    if (text == NULL || c->pg == NULL || notify_exec(c->pg, NOTIFY_LAZY_SQL, text, NULL) != 0)
        qrl__pg_log("cannot tell other nodes of a change; they see it at their next read");
    free(text);
}
