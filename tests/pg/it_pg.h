/* SPDX-License-Identifier: MIT */
/*
 * PostgreSQL for the integration-test harness (tests/integration/harness.c): with
 * QRL_TEST_BACKEND=postgres every test server gets a database of its own on the test cluster
 * that tests/pg/cluster.sh started, and the harness reads it the way it reads a SQLite file.
 *
 * Where the cluster is (tests/pg/README):
 *   QRL_TEST_PG_URI   the cluster's libpq URI (postgresql://postgres@127.0.0.1:PORT/postgres),
 *                     or, when unset,
 *   QRL_TEST_PG_DIR   the cluster directory, whose `uri` file cluster.sh wrote.
 * Tests that stop or restart the database do it on a cluster of their own
 * (it_pg_own_cluster_start()), since doing it to the shared one would disturb every test running
 * beside them; they need QRL_TEST_PG_DIR (their cluster goes in DIR/own/PID, so that `cluster.sh
 * stop DIR` removes it too if the test dies) and QRL_TEST_PG_SCRIPT, the path of
 * tests/pg/cluster.sh.
 *
 * Lifecycle of a test database: it_pg_db_acquire() (an empty one, or a copy of a template) ->
 * servers, `qrlogin account`, it_pg_count() ... -> it_pg_dump() (artifacts, optional) ->
 * it_pg_db_release() (kept for the next acquire of this process) -> at exit dropped, or left to
 * `cluster.sh stop` on the CTest fixture's cluster (it_pg.c says why). Names are
 * unique per process (program name, pid, sequence number), so test programs running in
 * parallel never meet.
 *
 * Threading: main test thread only (it_pg_count() and it_pg_db_acquire() assert).
 * it_pg_db_release() and it_pg_dump() never assert: they run from cleanup code and at exit.
 */
#ifndef QRL_IT_PG_H
#define QRL_IT_PG_H

#include <stddef.h>

/* 1 when QRL_TEST_BACKEND is "postgres", 0 when it is unset, empty or "sqlite"; any other
 * value fails the test (a typo must not quietly test SQLite). */
int it_pg_enabled(void);

/* A database for one test server, and its URI in uri (cap bytes): a new, empty one, or a copy
 * of the database `template_uri` names (no one may be connected to it then). It may be one this
 * process released before, reset: no schema at all, or the template's rows exactly (it_pg.c
 * says why). Asserts. */
void it_pg_db_acquire(const char *template_uri, char *uri, size_t cap);

/* Gives the database back for reuse by a later it_pg_db_acquire() of this process, which first
 * disconnects whoever is still connected to it.
 * Returns 0, or -1 after printing why. Never asserts. */
int it_pg_db_release(const char *uri);

/* Runs a query that yields one integer (SELECT count(*) ...) on the database; asserts that
 * it can. The same SQL the tests hand it_db_count() for SQLite. */
long long it_pg_count(const char *uri, const char *sql);

/* Writes every table of the database's public schema into dir/TABLE.copy (COPY ... binary:
 * text and bytea as their raw bytes, so tests/scan_secrets.sh finds a secret stored in plain
 * text in either). Returns 0, or -1 after printing why. */
int it_pg_dump(const char *uri, const char *dir);

/* Starts a cluster of this test program's own (cluster.sh start DIR/own/PID) and makes
 * it_pg_db_acquire() take databases there from then on. Databases of the shared cluster cannot
 * be templates there: use it_server_new() and it_account_add(), not
 * it_server_new_with_accounts(), for the servers on it. Asserts. */
void it_pg_own_cluster_start(void);
/* Runs `cluster.sh ACTION DIR` on our own cluster (ACTION: restart, down, up) and asserts that
 * it succeeded. */
void it_pg_own_cluster(const char *action);
/* Stops and removes our own cluster (free the servers on it first); databases are created on
 * the shared cluster again. Does nothing when there is none; never asserts. It also runs at
 * exit. */
void it_pg_own_cluster_stop(void);

#endif
