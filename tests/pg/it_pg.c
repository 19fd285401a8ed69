/* SPDX-License-Identifier: MIT */
/*
 * PostgreSQL for the integration-test harness: one database per test server on the shared test
 * cluster, created with CREATE DATABASE (a copy of a template database when the harness has one
 * with the test accounts already in it, which keeps Argon2id out of every test), read with
 * libpq, dropped at the end. See it_pg.h for the environment and the lifecycle.
 *
 * Everything talks to the cluster over TCP on 127.0.0.1 with the URI the cluster printed, the
 * way the server under test does.
 */
#include "it_pg.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

/* A database name is an identifier: at most 63 bytes (NAMEDATALEN - 1). */
#define IT_PG_NAME_MAX 63
/* How long a connection attempt may take before the test says the cluster is not there. */
#define IT_PG_CONNECT_TIMEOUT "10"

int it_pg_enabled(void)
{
    const char *b = getenv("QRL_TEST_BACKEND");
    if (b == NULL || b[0] == '\0' || strcmp(b, "sqlite") == 0) {
        return 0;
    }
    if (strcmp(b, "postgres") == 0) {
        return 1;
    }
    print_error("QRL_TEST_BACKEND=%s: expected sqlite or postgres\n", b);
    fail();
    return 0;
}

/* Our own cluster (it_pg_own_cluster_start()): its directory and URI, empty when none. */
static char own_dir[512];
static char own_uri[512];

/* The first line of `path` into buf (cap bytes), checked to be a libpq URI. Asserts. */
static void read_uri_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        print_error("cannot read the test cluster's URI from %s: %s (did the pg/start fixture "
                    "run? tests/pg/README)\n",
                    path, strerror(errno));
        fail();
    }
    if (fgets(buf, (int)cap, f) == NULL) {
        buf[0] = '\0';
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (strncmp(buf, "postgresql://", 13) != 0 && strncmp(buf, "postgres://", 11) != 0) {
        print_error("%s does not hold a libpq URI: \"%s\"\n", path, buf);
        buf[0] = '\0';
        fail();
    }
}

/* The cluster's URI: our own cluster's, $QRL_TEST_PG_URI, or the `uri` file in
 * $QRL_TEST_PG_DIR. Never NULL: asserts (the fixture that starts the cluster failed, or the
 * test runs outside CTest). */
static const char *cluster_uri(void)
{
    static char uri[512];
    if (own_uri[0] != '\0') {
        return own_uri;
    }
    if (uri[0] != '\0') {
        return uri;
    }
    const char *env = getenv("QRL_TEST_PG_URI");
    if (env != NULL && env[0] != '\0') {
        snprintf(uri, sizeof(uri), "%s", env);
        return uri;
    }
    const char *dir = getenv("QRL_TEST_PG_DIR");
    if (dir == NULL || dir[0] == '\0') {
        print_error("QRL_TEST_BACKEND=postgres needs QRL_TEST_PG_URI or QRL_TEST_PG_DIR "
                    "(tests/pg/README)\n");
        fail();
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/uri", dir);
    read_uri_file(path, uri, sizeof(uri));
    return uri;
}

/* Splits a URI into what comes before its database name, the name, and what comes after it
 * (the ?parameters). Returns 0, or -1 when it has no "scheme://". */
static int uri_parts(const char *uri, size_t *path_at, size_t *name_len)
{
    const char *auth = strstr(uri, "://");
    if (auth == NULL) {
        return -1;
    }
    auth += 3;
    size_t host_len = strcspn(auth, "/?");
    size_t at = (size_t)(auth - uri) + host_len;
    *path_at = at;
    *name_len = 0;
    if (uri[at] == '/') {
        *name_len = strcspn(uri + at + 1, "?");
    }
    return 0;
}

/* `uri` with its database name replaced by `name`. */
static void uri_with_db(const char *uri, const char *name, char *out, size_t cap)
{
    size_t at, len;
    assert_int_equal(uri_parts(uri, &at, &len), 0);
    const char *rest = uri + at + (uri[at] == '/' ? 1 + len : 0);
    int n = snprintf(out, cap, "%.*s/%s%s", (int)at, uri, name, rest);
    assert_true(n > 0 && (size_t)n < cap);
}

/* The database name inside `uri` (never longer than IT_PG_NAME_MAX). */
static int uri_db_name(const char *uri, char name[IT_PG_NAME_MAX + 1])
{
    size_t at, len;
    if (uri_parts(uri, &at, &len) != 0 || len == 0 || len > IT_PG_NAME_MAX) {
        return -1;
    }
    memcpy(name, uri + at + 1, len);
    name[len] = '\0';
    return 0;
}

/* A connection to `uri`; read_only makes every transaction read-only, as it_db_count()
 * promises. NULL after printing why. */
static PGconn *connect_to(const char *uri, int read_only)
{
    const char *const keys[] = {"dbname", "connect_timeout", "application_name", "options", NULL};
    const char *const values[] = {uri, IT_PG_CONNECT_TIMEOUT, "qrlogin-test-harness",
                                  read_only ? "-c default_transaction_read_only=on" : "", NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "harness: cannot connect to %s: %s", uri,
                c != NULL ? PQerrorMessage(c) : "out of memory\n");
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Runs a command that returns no rows; returns 0, or -1 after printing the server's message. */
static int exec_command(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) {
        fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(c));
    }
    PQclear(res);
    return ok ? 0 : -1;
}

/* A new name: the test program's name, our pid and a sequence number, as an identifier. */
static void new_db_name(char out[IT_PG_NAME_MAX + 1])
{
    static unsigned seq;
    char raw[IT_PG_NAME_MAX + 1];
    snprintf(raw, sizeof(raw), "qrl_%.32s_%ld_%u", program_invocation_short_name, (long)getpid(),
             ++seq);
    size_t i;
    for (i = 0; raw[i] != '\0'; i++) {
        char ch = raw[i];
        int keep = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
        if (ch >= 'A' && ch <= 'Z') {
            ch = (char)(ch - 'A' + 'a');
            keep = 1;
        }
        out[i] = keep ? ch : '_';
    }
    out[i] = '\0';
}

/* Creates database `name` on `cluster` (a copy of database `tmpl` when not NULL). Asserts. */
static void db_create(const char *cluster, const char *name, const char *tmpl)
{
    char sql[256];
    if (tmpl != NULL) {
        snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\" TEMPLATE \"%s\"", name, tmpl);
    } else {
        snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", name);
    }
    PGconn *c = connect_to(cluster, 0);
    if (c == NULL) {
        print_error("the PostgreSQL test cluster at %s does not answer (tests/pg/README)\n",
                    cluster);
        fail();
    }
    int rc = exec_command(c, sql);
    PQfinish(c);
    if (rc != 0) {
        print_error("cannot create the test database %s\n", name);
        fail();
    }
}

/* Drops the database `uri` names, disconnecting whoever is still connected. Returns 0, or -1
 * after printing why. Never asserts. */
static int db_drop(const char *uri)
{
    char name[IT_PG_NAME_MAX + 1], sql[256], cluster[512];
    if (uri_db_name(uri, name) != 0) {
        fprintf(stderr, "harness: no database name in %s\n", uri);
        return -1;
    }
    /* The maintenance database of the same cluster: we cannot drop the one we are in. */
    uri_with_db(uri, "postgres", cluster, sizeof(cluster));
    PGconn *c = connect_to(cluster, 0);
    if (c == NULL) {
        return -1;
    }
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
    int rc = exec_command(c, sql);
    PQfinish(c);
    return rc;
}

/*
 * The databases of this process. A database costs a lot to make and to drop on a cluster that
 * syncs to disk: CREATE DATABASE writes a copy of the whole catalogue (8 MB) to the WAL and
 * syncs it, and DROP DATABASE forces a checkpoint of the whole cluster, which every test running
 * beside us then waits for. So a released database is kept and reset for the next server of
 * this process instead (db_reset()): emptied to no schema at all, as a new database is, or
 * refilled with its template's rows. A process makes as many databases as it has servers at
 * once (plus its templates); drop_released_at_exit() says what becomes of them.
 */
#define IT_PG_MAX_DBS 16
static struct pg_db {
    char uri[512];
    char cluster[512];             /* the URI of the cluster it lives on */
    char tmpl[IT_PG_NAME_MAX + 1]; /* the template it was made from, "" for none */
    int in_use;
} dbs[IT_PG_MAX_DBS];

/* At exit: drops what this process released, on a cluster given by QRL_TEST_PG_URI. On the
 * cluster of the CTest fixture (QRL_TEST_PG_DIR) the databases stay until `pg/stop` removes
 * the whole cluster: each DROP DATABASE would force a checkpoint that the tests running beside
 * us wait for, seconds on a busy machine, to free a few megabytes for minutes. */
static void drop_released_at_exit(void)
{
    const char *foreign = getenv("QRL_TEST_PG_URI");
    if (foreign == NULL || foreign[0] == '\0') {
        return;
    }
    for (int i = 0; i < IT_PG_MAX_DBS; i++) {
        if (dbs[i].uri[0] != '\0' && !dbs[i].in_use) {
            (void)db_drop(dbs[i].uri);
            dbs[i].uri[0] = '\0';
        }
    }
}

/* Runs one statement, ignoring any rows; returns 0, or -1 after printing why. */
static int exec_any(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(c));
    }
    PQclear(res);
    return ok ? 0 : -1;
}

/* Copies table `qualified` from `src` into `dst` (binary COPY, connection to connection). */
static int copy_table(PGconn *src, PGconn *dst, const char *qualified)
{
    char sql[512];
    int rc = 0;
    snprintf(sql, sizeof(sql), "COPY %s FROM STDIN (FORMAT binary)", qualified);
    PGresult *res = PQexec(dst, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(dst));
        PQclear(res);
        return -1;
    }
    PQclear(res);
    snprintf(sql, sizeof(sql), "COPY %s TO STDOUT (FORMAT binary)", qualified);
    res = PQexec(src, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(src));
        rc = -1;
    }
    PQclear(res);
    char *buf = NULL;
    int n;
    while (rc == 0 && (n = PQgetCopyData(src, &buf, 0)) > 0) {
        if (PQputCopyData(dst, buf, n) != 1) {
            rc = -1;
        }
        PQfreemem(buf);
    }
    while ((res = PQgetResult(src)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = -1;
        }
        PQclear(res);
    }
    if (PQputCopyEnd(dst, rc == 0 ? NULL : "the template could not be read") != 1) {
        rc = -1;
    }
    while ((res = PQgetResult(dst)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "harness: copying %s: %s", qualified, PQerrorMessage(dst));
            rc = -1;
        }
        PQclear(res);
    }
    return rc;
}

/* Makes the tables of `dst` hold exactly the rows of `src` (the same schema: the same qrlogin
 * migrated both), and its sequences stand where the template's do. Inside a transaction. */
static int refill_from(PGconn *src, PGconn *dst)
{
    static const char *const list_tables =
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')";
    static const char *const list_sequences =
        "SELECT format('%I.%I', schemaname, sequencename), last_value IS NOT NULL, "
        "coalesce(last_value, start_value) FROM pg_sequences "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')";
    PGresult *tables = PQexec(src, list_tables);
    PGresult *seqs = PQexec(src, list_sequences);
    int rc = 0;
    if (PQresultStatus(tables) != PGRES_TUPLES_OK || PQresultStatus(seqs) != PGRES_TUPLES_OK) {
        fprintf(stderr, "harness: listing the template's tables: %s", PQerrorMessage(src));
        rc = -1;
    }
    /* Rows go in table by table, whatever refers to what: no foreign-key trigger fires in
     * this transaction, and the template's rows satisfied the keys already. */
    if (rc == 0) {
        rc = exec_any(dst, "SET LOCAL session_replication_role = replica");
    }
    for (int i = 0; rc == 0 && i < PQntuples(tables); i++) {
        char sql[512];
        snprintf(sql, sizeof(sql), "DELETE FROM %s", PQgetvalue(tables, i, 0));
        rc = exec_any(dst, sql);
        if (rc == 0) {
            rc = copy_table(src, dst, PQgetvalue(tables, i, 0));
        }
    }
    for (int i = 0; rc == 0 && i < PQntuples(seqs); i++) {
        char sql[512];
        snprintf(sql, sizeof(sql), "SELECT setval('%s', %s, %s)", PQgetvalue(seqs, i, 0),
                 PQgetvalue(seqs, i, 2),
                 strcmp(PQgetvalue(seqs, i, 1), "t") == 0 ? "true" : "false");
        rc = exec_any(dst, sql);
    }
    PQclear(tables);
    PQclear(seqs);
    return rc;
}

/* Resets a released database for its next server: first disconnects whoever is still connected
 * (a server killed with SIGKILL may leave its sessions for a moment), then empties it (no
 * schema, as CREATE DATABASE leaves it) or refills it from `tmpl_uri`, in one transaction.
 * Returns 0, or -1 after printing why. */
static int db_reset(const char *uri, const char *tmpl_uri)
{
    PGconn *dst = connect_to(uri, 0);
    PGconn *src = tmpl_uri != NULL ? connect_to(tmpl_uri, 1) : NULL;
    int rc = dst != NULL && (tmpl_uri == NULL || src != NULL) ? 0 : -1;
    if (rc == 0) {
        rc = exec_any(dst, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()");
    }
    if (rc == 0) {
        rc = exec_any(dst, "BEGIN");
    }
    if (rc == 0 && src == NULL) {
        rc = exec_any(dst, "DROP SCHEMA public CASCADE");
        if (rc == 0) {
            rc = exec_any(dst, "CREATE SCHEMA public");
        }
    } else if (rc == 0) {
        rc = refill_from(src, dst);
    }
    if (rc == 0) {
        rc = exec_any(dst, "COMMIT");
    }
    PQfinish(src);
    PQfinish(dst);
    return rc;
}

void it_pg_db_acquire(const char *template_uri, char *uri, size_t cap)
{
    static int registered;
    const char *cluster = cluster_uri();
    char tmpl[IT_PG_NAME_MAX + 1] = "", name[IT_PG_NAME_MAX + 1];

    if (template_uri != NULL) {
        assert_int_equal(uri_db_name(template_uri, tmpl), 0);
    }
    if (!registered) {
        atexit(drop_released_at_exit);
        registered = 1;
    }
    /* A released one on this cluster: any, to be emptied; or one of the same template, to be
     * refilled (its tables are there already). */
    for (int i = 0; i < IT_PG_MAX_DBS; i++) {
        struct pg_db *d = &dbs[i];
        if (d->uri[0] == '\0' || d->in_use || strcmp(d->cluster, cluster) != 0 ||
            (template_uri != NULL && strcmp(d->tmpl, tmpl) != 0)) {
            continue;
        }
        if (db_reset(d->uri, template_uri) != 0) {
            print_error("cannot reset the test database %s for reuse\n", d->uri);
            fail();
        }
        assert_true(strlen(d->uri) < cap);
        memcpy(uri, d->uri, strlen(d->uri) + 1);
        snprintf(d->tmpl, sizeof(d->tmpl), "%s", tmpl);
        d->in_use = 1;
        return;
    }
    new_db_name(name);
    db_create(cluster, name, template_uri != NULL ? tmpl : NULL);
    uri_with_db(cluster, name, uri, cap);
    for (int i = 0; i < IT_PG_MAX_DBS; i++) {
        struct pg_db *d = &dbs[i];
        if (d->uri[0] == '\0') {
            snprintf(d->uri, sizeof(d->uri), "%s", uri);
            snprintf(d->cluster, sizeof(d->cluster), "%s", cluster);
            snprintf(d->tmpl, sizeof(d->tmpl), "%s", tmpl);
            d->in_use = 1;
            return;
        }
    }
    /* Every slot is taken: this one is dropped when released. */
}

int it_pg_db_release(const char *uri)
{
    for (int i = 0; i < IT_PG_MAX_DBS; i++) {
        if (dbs[i].uri[0] != '\0' && dbs[i].in_use && strcmp(dbs[i].uri, uri) == 0) {
            dbs[i].in_use = 0;
            return 0;
        }
    }
    return db_drop(uri);
}

long long it_pg_count(const char *uri, const char *sql)
{
    PGconn *c = connect_to(uri, 1);
    if (c == NULL) {
        print_error("cannot connect to the test database to run: %s\n", sql);
        fail();
    }
    PGresult *res = PQexec(c, sql);
    long long n = -1;
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQnfields(res) == 1;
    if (!ok) {
        print_error("%s: %s", sql, PQerrorMessage(c));
    } else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    PQfinish(c);
    if (!ok) {
        fail();
    }
    return n;
}

/* Copies one table to `path` with COPY ... TO STDOUT (FORMAT binary). */
static int dump_table(PGconn *c, const char *qualified, const char *path)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "COPY %s TO STDOUT (FORMAT binary)", qualified);
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(c));
        PQclear(res);
        return -1;
    }
    PQclear(res);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd >= 0 ? 0 : -1;
    char *buf = NULL;
    int n;
    while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
        if (rc == 0 && write(fd, buf, (size_t)n) != n) {
            rc = -1;
        }
        PQfreemem(buf);
    }
    while ((res = PQgetResult(c)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = -1;
        }
        PQclear(res);
    }
    if (fd >= 0) {
        close(fd);
    }
    if (rc != 0) {
        fprintf(stderr, "harness: cannot keep %s in %s\n", qualified, path);
    }
    return rc;
}

int it_pg_dump(const char *uri, const char *dir)
{
    PGconn *c = connect_to(uri, 1);
    if (c == NULL) {
        return -1;
    }
    PGresult *res = PQexec(c, "SELECT format('%I.%I', schemaname, tablename), "
                              "schemaname || '.' || tablename FROM pg_tables "
                              "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
                              "ORDER BY 2");
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "harness: listing the tables of %s: %s", uri, PQerrorMessage(c));
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        char path[800];
        snprintf(path, sizeof(path), "%s/%s.copy", dir, PQgetvalue(res, i, 1));
        if (dump_table(c, PQgetvalue(res, i, 0), path) != 0) {
            rc = -1;
        }
    }
    PQclear(res);
    PQfinish(c);
    return rc;
}

/* Runs `cluster.sh ACTION DIR`; returns its wait status (never asserts). */
static int run_cluster_script(const char *script, const char *action, const char *dir)
{
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO); /* keep the test's stdout for test output */
        execl(script, script, action, dir, (char *)NULL);
        fprintf(stderr, "harness: exec %s: %s\n", script, strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) == -1) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return status;
}

static const char *cluster_script(void)
{
    const char *script = getenv("QRL_TEST_PG_SCRIPT");
    if (script == NULL || script[0] == '\0') {
        print_error("a test with a cluster of its own needs QRL_TEST_PG_SCRIPT, the path of "
                    "tests/pg/cluster.sh (tests/pg/README)\n");
        fail();
    }
    return script;
}

static void own_cluster_at_exit(void)
{
    it_pg_own_cluster_stop();
}

void it_pg_own_cluster_start(void)
{
    static int registered;
    const char *script = cluster_script();
    const char *root = getenv("QRL_TEST_PG_DIR");
    char path[600];

    /* A setup that failed half-way leaves one behind (cmocka skips the teardown then). */
    it_pg_own_cluster_stop();
    if (root == NULL || root[0] == '\0') {
        print_error("a test with a cluster of its own needs QRL_TEST_PG_DIR (tests/pg/README)\n");
        fail();
    }
    snprintf(path, sizeof(path), "%s/own", root);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        print_error("mkdir %s: %s\n", path, strerror(errno));
        fail();
    }
    snprintf(own_dir, sizeof(own_dir), "%s/own/%ld", root, (long)getpid());
    if (!registered) {
        atexit(own_cluster_at_exit);
        registered = 1;
    }
    int status = run_cluster_script(script, "start", own_dir);
    if (status != 0) {
        print_error("%s start %s failed (wait status 0x%x)\n", script, own_dir, status);
        own_dir[0] = '\0';
        fail();
    }
    snprintf(path, sizeof(path), "%s/uri", own_dir);
    read_uri_file(path, own_uri, sizeof(own_uri));
}

void it_pg_own_cluster(const char *action)
{
    const char *script = cluster_script();
    if (own_dir[0] == '\0') {
        print_error("cluster.sh %s: this test has no cluster of its own "
                    "(it_pg_own_cluster_start())\n",
                    action);
        fail();
    }
    int status = run_cluster_script(script, action, own_dir);
    if (status != 0) {
        print_error("%s %s %s failed (wait status 0x%x)\n", script, action, own_dir, status);
        fail();
    }
}

void it_pg_own_cluster_stop(void)
{
    const char *script = getenv("QRL_TEST_PG_SCRIPT");
    if (own_dir[0] == '\0' || script == NULL) {
        return;
    }
    int status = run_cluster_script(script, "stop", own_dir);
    if (status != 0) {
        fprintf(stderr, "harness: %s stop %s failed (wait status 0x%x)\n", script, own_dir, status);
    }
    /* Its databases went with it. */
    for (int i = 0; i < IT_PG_MAX_DBS; i++) {
        if (strcmp(dbs[i].cluster, own_uri) == 0) {
            memset(&dbs[i], 0, sizeof(dbs[i]));
        }
    }
    own_dir[0] = '\0';
    own_uri[0] = '\0';
}
