/* SPDX-License-Identifier: MIT */
/*
 * Connections of the SQLite store: opening one with the store's settings, the per-thread
 * connections (the writer's, the opening thread's), the few reading connections every thread
 * shares, and the read scopes that let one request's reads share a snapshot.
 *
 * Why shaped so: SQLite connections are cheap to use and costly to keep warm. Every connection
 * is opened with SQLITE_OPEN_NOMUTEX and used by one thread at a time, so SQLite takes no mutex
 * of its own; the threads that need a connection of their own (the writer, the checkpointer,
 * the opening thread) keep one in thread-specific data, and readers lease a shared one for the
 * length of a method or a scope ("reads" below says why few and shared). Every connection is
 * on the handle's list and is closed by the store's close.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "../walbuf.h"
#include "sqlite_internal.h"

/* How long a connection waits for a lock another process holds before SQLITE_BUSY, which the
 * store answers as QRL_ERR_BUSY (503 with Retry-After).
 *
 * The writer's connection waits WRITE_BUSY_TIMEOUT_MS. Nothing in this process ever holds the
 * write lock for long (a group commit takes milliseconds, checkpoints are PASSIVE and take no
 * write lock), so a longer wait means another process: an operator's sqlite3 shell inside a
 * transaction, a `qrlogin account` command, a copy tool. The whole queue of writes waits behind
 * the writer's one BEGIN IMMEDIATE, and every waiting write holds a worker thread: with the 10 s
 * it used to be, a lock held for a minute kept every writing request 10 to 20 s before its 503
 * and tied up the worker threads the reads need. 2 s still rides out short transactions of
 * other processes (an account added beside a running server commits in milliseconds once its
 * Argon2id is done), answers a client well within its own timeout, and the client's retry (our
 * 503 carries Retry-After: 1) finds the lock gone as soon as possible. Measured with
 * tests/integration/test_store_faults.c (a write transaction held by another process): 503
 * after 10.0 s before, after 2.0 s now.
 *
 * Other connections keep READ_BUSY_TIMEOUT_MS: in WAL mode a reader never waits for a writer,
 * only for the rare moments another process holds a lock that excludes readers (recovery of a
 * WAL after a crash, an exclusive locking mode), and the opening thread's migration may have to
 * wait for another process's. */
#define WRITE_BUSY_TIMEOUT_MS 2000
#define READ_BUSY_TIMEOUT_MS 10000

/* Set on the writer thread of a store. */
static _Thread_local sqlite_store *writer_of;

/* --- connections --------------------------------------------------------------------------- */

void qrl__sqlite_conn_close(struct conn *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    if (sqlite3_close(c->db) != SQLITE_OK)
        qrl__sqlite_log_db(c->db, "close");
    free(c);
}

/* Opens a connection and applies the per-connection settings. */
qrl_err qrl__sqlite_conn_open(const char *path, struct conn **out, char *errbuf, size_t errlen)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    const unsigned char *mode;
    int src;
    qrl_err rc = QRL_ERR_STORE;

    c = calloc(1, sizeof *c);
    if (c == NULL)
        return QRL_ERR_NOMEM;
    src = sqlite3_open_v2(path, &c->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                          qrl__walbuf_usable() ? QRL__WALBUF_VFS : NULL);
    if (src != SQLITE_OK) {
        qrl__sqlite_set_errbuf(errbuf, errlen, "cannot open %s: %s", path,
                               c->db != NULL ? sqlite3_errmsg(c->db) : "out of memory");
        goto out;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, READ_BUSY_TIMEOUT_MS);
    /* page_size applies to a new file only. Small pages: each login request touches three
     * random-keyed index leaves, and every touched page is written whole to the WAL, so 1 KiB
     * pages write a quarter of what 4 KiB pages do. journal_size_limit truncates a WAL that a
     * burst made large once it restarts. (mmap_size was tried for the readers and dropped: each
     * of the worker connections remaps the growing file, and mapped file pages count against
     * every held request's share of the resident memory.) synchronous=FULL is also what makes
     * walbuf correct (walbuf.h): never lower it on a connection of this store. */
    if (sqlite3_exec(c->db,
                     "PRAGMA page_size=1024; PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;"
                     " PRAGMA journal_size_limit=67108864",
                     NULL, NULL, NULL) != SQLITE_OK) {
        qrl__sqlite_set_errbuf(errbuf, errlen, "%s: %s", path, sqlite3_errmsg(c->db));
        goto out;
    }
    /* Setting WAL on a database already in WAL mode is a cheap no-op; the answer tells whether
     * the mode is in effect (a file system without shared memory refuses it). */
    src = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    mode = src == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
    if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
        qrl__sqlite_set_errbuf(errbuf, errlen, "%s: cannot enable WAL journal mode: %s", path,
                               src == SQLITE_ROW ? "refused" : sqlite3_errmsg(c->db));
        goto out;
    }
    rc = QRL_OK;
out:
    sqlite3_finalize(s);
    if (rc != QRL_OK) {
        qrl__sqlite_conn_close(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

/* The calling thread's connection, opened on its first call. */
qrl_err qrl__sqlite_conn_get(sqlite_store *s, struct conn **out)
{
    struct conn *c = pthread_getspecific(s->key);
    qrl_err rc;

    if (c == NULL) {
        rc = qrl__sqlite_conn_open(s->path, &c, NULL, 0);
        if (rc != QRL_OK)
            return rc;
        if (writer_of == s)
            sqlite3_busy_timeout(c->db, WRITE_BUSY_TIMEOUT_MS);
        if (pthread_setspecific(s->key, c) != 0) {
            qrl__sqlite_conn_close(c);
            return QRL_ERR_NOMEM;
        }
        pthread_mutex_lock(&s->lock);
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->lock);
    }
    *out = c;
    return QRL_OK;
}

/* --- reads ---------------------------------------------------------------------------------
 *
 * Reads run on a few connections shared by every thread, not on one per thread. In WAL mode a
 * connection empties its page cache whenever another connection has committed since its last
 * read, and the group-commit writer commits hundreds of times a second: with one connection per
 * worker thread (dozens of them) nearly every read started from an empty cache and read each
 * b-tree page of its lookup again with a pread (58 per full flow, measured). A few connections
 * that serve every thread stay warm between commits. A read method leases one for its duration
 * (READ_METHOD, sqlite_internal.h); qrl__sqlite_store_conn() then returns the lease. The writer
 * thread never leases: its reads must see the batch it is writing. */

/* Enough that a worker rarely waits for a free connection on the machines we target (reads
 * are short and do not block), few enough that each stays warm. */
#define READ_CONNS 4

static _Thread_local struct {
    sqlite_store *s;
    struct conn *c;
    int depth;
} lease;

/* The calling thread's read scope (store.h, read_begin). Its first read leases a connection as
 * any read does, and opens a read transaction on it (BEGIN) that keeps the lease until the
 * scope ends: the request's later reads then share the snapshot, the WAL read lock and the page
 * cache of the first instead of taking and dropping each (four fcntl calls and a cache check
 * per read transaction, measured in docs/benchmarks.md). */
static _Thread_local struct {
    sqlite_store *s; /* store of the open scope; NULL: none */
    int depth;       /* qrl__sqlite_read_begin calls not ended yet */
    int txn;         /* BEGIN ran on lease.c: the scope holds one count of the lease */
} scope;

static void scope_join(sqlite_store *s)
{
    if (scope.s != s || scope.txn)
        return;
    if (qrl__sqlite_exec_id(lease.c, ST_BEGIN_READ, "begin read") == QRL_OK) {
        scope.txn = 1;
        lease.depth++;
    }
}

qrl_err qrl__sqlite_lease_begin(qrl_store *st)
{
    sqlite_store *s = (sqlite_store *)st;
    struct conn *c = NULL;
    qrl_err rc = QRL_OK;

    if (s == NULL)
        return QRL_ERR_INVALID;
    if (lease.s == s) {
        lease.depth++;
        return QRL_OK;
    }
    /* The writer reads on its own connection; a thread already leasing from another store
     * handle (tests open several) uses its own too. */
    if (lease.s != NULL || writer_of == s)
        return QRL_OK;
    pthread_mutex_lock(&s->rmu);
    while (s->rfree == NULL && s->ropen >= READ_CONNS)
        pthread_cond_wait(&s->rfree_cv, &s->rmu);
    if (s->rfree != NULL) {
        c = s->rfree;
        s->rfree = c->rnext;
    } else {
        rc = qrl__sqlite_conn_open(s->path, &c, NULL, 0);
        if (rc == QRL_OK) {
            s->ropen++;
            pthread_mutex_lock(&s->lock);
            c->next = s->conns;
            s->conns = c;
            pthread_mutex_unlock(&s->lock);
        }
    }
    pthread_mutex_unlock(&s->rmu);
    if (rc != QRL_OK)
        return rc;
    lease.s = s;
    lease.c = c;
    lease.depth = 1;
    scope_join(s);
    return QRL_OK;
}

void qrl__sqlite_lease_end(qrl_store *st)
{
    sqlite_store *s = (sqlite_store *)st;
    struct conn *c = lease.c;

    if (lease.s != s || --lease.depth > 0)
        return;
    lease.s = NULL;
    lease.c = NULL;
    pthread_mutex_lock(&s->rmu);
    c->rnext = s->rfree;
    s->rfree = c;
    pthread_cond_signal(&s->rfree_cv);
    pthread_mutex_unlock(&s->rmu);
}

/* Ends the thread's scope, if any: its read transaction and its hold on the lease. */
static void scope_close(void)
{
    sqlite_store *s = scope.s;

    if (s == NULL)
        return;
    if (scope.txn) {
        /* Every statement was reset by its read method: COMMIT ends the read transaction. */
        if (qrl__sqlite_exec_id(lease.c, ST_COMMIT, "end read") != QRL_OK)
            (void)qrl__sqlite_exec_id(lease.c, ST_ROLLBACK, "rollback read");
        scope.txn = 0;
        qrl__sqlite_lease_end(&s->base);
    }
    scope.s = NULL;
    scope.depth = 0;
}

qrl_err qrl__sqlite_read_begin(qrl_store *st)
{
    sqlite_store *s = (sqlite_store *)st;

    if (s == NULL)
        return QRL_ERR_INVALID;
    if (scope.s == s) {
        scope.depth++;
        return QRL_OK;
    }
    /* The writer reads its own batch; inside a read method, or with a scope on another store
     * handle (tests open several), reads stand alone. */
    if (scope.s != NULL || writer_of == s || lease.s != NULL)
        return QRL_OK;
    scope.s = s;
    scope.depth = 1;
    return QRL_OK;
}

void qrl__sqlite_read_end(qrl_store *st)
{
    if (st == NULL || scope.s != (sqlite_store *)st)
        return;
    if (--scope.depth == 0)
        scope_close();
}

qrl_err qrl__sqlite_store_conn(qrl_store *st, struct conn **out)
{
    if (st == NULL)
        return QRL_ERR_INVALID;
    if (lease.s == (sqlite_store *)st) {
        *out = lease.c;
        return QRL_OK;
    }
    return qrl__sqlite_conn_get((sqlite_store *)st, out);
}

void qrl__sqlite_reads_on_writer(sqlite_store *s)
{
    writer_of = s;
}

void qrl__sqlite_scope_drop(sqlite_store *s)
{
    if (scope.s == s)
        scope_close();
}
