/* SPDX-License-Identifier: MIT */
/*
 * The health method of the PostgreSQL store (store.h): what /metrics shows of the store's
 * writes, and the probe behind /readyz.
 *
 * Statistics: this store commits each write on its own (the database server groups the WAL
 * flushes of concurrent commits, not we), so it measures each write method from its first
 * statement to its commit, in microseconds, as commit_us; sync_us and batch_writes stay empty
 * (n = 0: not measured). Relaxed atomic adds, two clock reads per write.
 *
 * The probe answers "would the database take a write now?" without writing and within about a
 * tenth of a second. On a connection of its own (opened on the first probe, kept, reopened
 * when it breaks, which may take up to a second), one round trip: a transaction that takes the
 * lock every write takes on each table (ROW EXCLUSIVE) with lock_timeout 100 ms, asks whether
 * the server is a read-only standby, and is rolled back. So:
 * - a lock held by someone else that writes would wait for (an ALTER TABLE, a VACUUM FULL, an
 *   operator's LOCK TABLE, a migration of a newer node) or an answer slower than the budget:
 *   QRL_ERR_BUSY;
 * - a standby (after a failover the URI may point at one) or a read-only database:
 *   QRL_ERR_STORE, as is a server that cannot be reached.
 * Row locks are not probed: they block single rows, not the database.
 */
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "pg_internal.h"

#define PROBE_BUDGET_MS 150
#define PROBE_CONNECT_MS 1000

#define TIME_BUCKETS 13
static const uint64_t time_bounds_us[TIME_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};
_Static_assert(TIME_BUCKETS <= QRL_STORE_HIST_MAX, "a qrl_store_hist holds at most 16 bounds");

static const char PROBE_SQL[] =
    "BEGIN; SET LOCAL lock_timeout = 100; SET LOCAL statement_timeout = 1000;"
    " LOCK TABLE accounts, devices, tokens, login_requests, rate_limits, passkeys"
    " IN ROW EXCLUSIVE MODE;"
    " SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'";

uint64_t qrl__pg_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void qrl__pg_stat_write(pg_store *s, uint64_t t0, qrl_err rc)
{
    uint64_t v = qrl__pg_now_us() - t0;
    size_t b = 0;

    if (rc != QRL_OK)
        return;
    while (b < TIME_BUCKETS && v > time_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&s->commits.count[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->commits.sum, v, memory_order_relaxed);
}

void qrl__pg_probe_close(pg_store *s)
{
    PQfinish(s->probe.pg);
    s->probe.pg = NULL;
}

/* Sends the probe and reads its results until `deadline` (us). */
static qrl_err probe_run(PGconn *pg, uint64_t deadline)
{
    qrl_err rc = QRL_OK;
    PGresult *r;

    if (!PQsendQuery(pg, PROBE_SQL))
        return QRL_ERR_STORE;
    for (;;) {
        while (PQisBusy(pg)) {
            struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
            uint64_t now = qrl__pg_now_us();
            if (now >= deadline)
                return QRL_ERR_BUSY; /* the caller drops the connection */
            if (poll(&pfd, 1, (int)((deadline - now) / 1000 + 1)) < 0 || !PQconsumeInput(pg))
                return QRL_ERR_STORE;
        }
        if ((r = PQgetResult(pg)) == NULL)
            return rc;
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            if (strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
                qrl__pg_log("readiness probe: the database is read-only");
                rc = QRL_ERR_STORE;
            }
        } else if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == QRL_OK) {
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            /* 55P03: the lock is held; 57014: the time ran out; 25006: read-only. */
            rc = state != NULL && (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0)
                     ? QRL_ERR_BUSY
                     : QRL_ERR_STORE;
        }
        PQclear(r);
    }
}

static qrl_err write_probe(pg_store *s)
{
    uint64_t deadline;
    char err[256];
    qrl_err rc;

    pthread_mutex_lock(&s->probe_mu);
    if (s->probe.pg != NULL && PQstatus(s->probe.pg) != CONNECTION_OK)
        qrl__pg_probe_close(s);
    if (s->probe.pg == NULL &&
        qrl__pg_connect(s, PROBE_CONNECT_MS, &s->probe.pg, err, sizeof err) != QRL_OK) {
        qrl__pg_log("readiness probe: cannot connect (%s)", err);
        pthread_mutex_unlock(&s->probe_mu);
        return QRL_ERR_STORE;
    }
    deadline = qrl__pg_now_us() + PROBE_BUDGET_MS * 1000u;
    rc = probe_run(s->probe.pg, deadline);
    /* A probe cut short leaves its query running: drop the connection rather than wait. */
    if (PQisBusy(s->probe.pg) || PQstatus(s->probe.pg) != CONNECTION_OK)
        qrl__pg_probe_close(s);
    else
        PQclear(PQexec(s->probe.pg, "ROLLBACK"));
    pthread_mutex_unlock(&s->probe_mu);
    return rc;
}

qrl_err qrl__pg_health(qrl_store *st, int probe, qrl_store_health *out)
{
    pg_store *s = (pg_store *)st;

    if (s == NULL)
        return QRL_ERR_INVALID;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
        out->commit_us.n = TIME_BUCKETS;
        for (size_t i = 0; i < TIME_BUCKETS; i++)
            out->commit_us.le[i] = time_bounds_us[i];
        for (size_t i = 0; i <= TIME_BUCKETS; i++)
            out->commit_us.count[i] =
                atomic_load_explicit(&s->commits.count[i], memory_order_relaxed);
        out->commit_us.sum = atomic_load_explicit(&s->commits.sum, memory_order_relaxed);
    }
    return probe ? write_probe(s) : QRL_OK;
}
