/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the store interface (include/qrlogin/store.h) over the PostgreSQL backend,
 * against a real PostgreSQL server.
 *
 * The program starts a throwaway cluster of its own (tests/pg/cluster.sh start DIR, whose path
 * comes in QRL_TEST_PG_SCRIPT) before the first test and removes it at the end; every test
 * creates a database of its own (CREATE DATABASE t_<random>) and drops it afterwards, so tests
 * are independent and can run in any order. They call the backend only through its method
 * table, as the core does; a separate libpq connection (admin_*) checks what the database
 * holds, plays another program (a lock, a killed session), and the cluster script stops and
 * starts the server under a running store.
 *
 * Besides the method families (ported from the SQLite store's tests where the semantics are
 * the same), what only several nodes on one database can break: 16 threads racing for one
 * transition and one redemption, on one handle and on two ("two nodes"); handles opened at the
 * same moment on an empty database (one migration); a newer schema refused; another node's
 * changes reaching the notify hook, also after the listening connection was killed; a method
 * while the database is down (QRL_ERR_BUSY) and after it is back (works); the RFC 8628 poll
 * bookkeeping shared by two nodes; GCRA limits shared by two nodes; a WebAuthn challenge put on
 * one node and taken on the other, taken once by 16 threads racing on two nodes, and bounded
 * per phone under puts racing on two nodes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "qrlogin/core.h"
#include "qrlogin/store.h"

#define T0 1700000000000LL /* a plausible "now" in ms */
#define TTL 120000LL       /* login request lifetime */
#define NTHREADS 16

/* The cluster of this program (main): its directory and its URI (database "postgres"). */
static char cluster_dir[64];
static char cluster_uri[256];
static const char *cluster_script;

typedef struct fixture {
    char db[32];   /* t_<random> */
    char uri[320]; /* the cluster's URI naming db */
    qrl_store *st;
} fixture;

/* --- the cluster and admin connections ---------------------------------------------------- */

/* Runs `cluster.sh ACTION cluster_dir`; its stdout (the URI, for start) into out. */
static int cluster(const char *action, char *out, size_t len)
{
    char cmd[512], line[256] = "";
    FILE *p;
    int st;

    snprintf(cmd, sizeof cmd, "'%s' %s '%s'", cluster_script, action, cluster_dir);
    if ((p = popen(cmd, "r")) == NULL)
        return -1;
    if (fgets(line, sizeof line, p) == NULL)
        line[0] = '\0';
    while (fgetc(p) != EOF)
        ;
    st = pclose(p);
    line[strcspn(line, "\r\n")] = '\0';
    if (out != NULL)
        snprintf(out, len, "%s", line);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The cluster's URI with database `db`. */
static void uri_of(const char *db, char *out, size_t len)
{
    const char *slash = strrchr(cluster_uri, '/');

    snprintf(out, len, "%.*s/%s", (int)(slash - cluster_uri), cluster_uri, db);
}

static PGconn *admin(const char *uri)
{
    PGconn *c = PQconnectdb(uri);

    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("admin connection to %s: %s", uri, PQerrorMessage(c));
    return c;
}

static void admin_exec(const char *uri, const char *sql)
{
    PGconn *c = admin(uri);
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);

    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* One integer from a query on a separate connection: what is really in the database. */
static int64_t admin_int(const char *uri, const char *sql)
{
    PGconn *c = admin(uri);
    PGresult *r = PQexec(c, sql);
    int64_t v = -1;

    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strcmp(PQgetvalue(r, 0, 0), "t") == 0   ? 1
            : strcmp(PQgetvalue(r, 0, 0), "f") == 0 ? 0
                                                    : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

static int64_t ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- fixture ------------------------------------------------------------------------------ */

static void new_database(char *db, size_t dblen, char *uri, size_t urilen)
{
    char sql[96];
    unsigned r;

    if (getrandom(&r, sizeof r, 0) != sizeof r)
        r = (unsigned)getpid() ^ (unsigned)ms_now();
    snprintf(db, dblen, "t_%08x", r);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    admin_exec(cluster_uri, sql);
    uri_of(db, uri, urilen);
}

static void drop_database(const char *db)
{
    char sql[96];

    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    admin_exec(cluster_uri, sql);
}

static int fixture_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256] = "";

    if (f == NULL)
        return -1;
    new_database(f->db, sizeof f->db, f->uri, sizeof f->uri);
    if (qrl_store_postgres_open(f->uri, &f->st, err, sizeof err) != QRL_OK) {
        fprintf(stderr, "open: %s\n", err);
        drop_database(f->db);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture *f = *state;

    if (f->st != NULL)
        f->st->m->close(f->st);
    drop_database(f->db);
    free(f);
    return 0;
}

/* A second handle on the fixture's database: another node. */
static qrl_store *node(const fixture *f)
{
    qrl_store *st = NULL;
    char err[256] = "";

    if (qrl_store_postgres_open(f->uri, &st, err, sizeof err) != QRL_OK)
        fail_msg("second node: %s", err);
    return st;
}

static void reopen(fixture *f)
{
    f->st->m->close(f->st);
    f->st = node(f);
}

/* --- record builders (as in the SQLite store's tests) ------------------------------------- */

static qrl_hash hash_of(unsigned seed)
{
    qrl_hash h;

    for (size_t i = 0; i < sizeof h.b; i++)
        h.b[i] = (unsigned char)(seed * 31u + i * 7u + (seed >> 8));
    return h;
}

static int64_t add_account(qrl_store *st, const char *name, int disabled)
{
    qrl_account_rec a;

    memset(&a, 0, sizeof a);
    snprintf(a.username, sizeof a.username, "%s", name);
    snprintf(a.display_name, sizeof a.display_name, "User %s", name);
    snprintf(a.pw_hash, sizeof a.pw_hash, "$argon2id$v=19$m=65536,t=2,p=1$fake");
    a.created_ms = T0;
    a.disabled = disabled;
    assert_int_equal(st->m->account_create(st, &a), QRL_OK);
    assert_true(a.id > 0);
    return a.id;
}

static qrl_token_rec make_token(unsigned seed, qrl_token_kind kind, int64_t created,
                                int64_t expires)
{
    qrl_token_rec t;

    memset(&t, 0, sizeof t);
    t.hash = hash_of(seed);
    t.kind = kind;
    t.created_ms = created;
    t.expires_ms = expires;
    snprintf(t.client_id, sizeof t.client_id, "tv-app");
    snprintf(t.scope, sizeof t.scope, "openid profile");
    return t;
}

static qrl_device_rec make_device(int64_t account_id, const char *name, int64_t created)
{
    qrl_device_rec d;

    memset(&d, 0, sizeof d);
    d.account_id = account_id;
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.kind, sizeof d.kind, "phone");
    snprintf(d.address, sizeof d.address, "192.0.2.10");
    d.created_ms = created;
    return d;
}

static int64_t add_device(qrl_store *st, int64_t account_id, const char *name, int64_t created)
{
    qrl_device_rec d = make_device(account_id, name, created);

    assert_int_equal(st->m->device_create(st, &d, NULL, 0), QRL_OK);
    assert_true(d.id > 0);
    return d.id;
}

static qrl_lr_rec make_lr(unsigned seed, const char *user_code, int64_t created)
{
    qrl_lr_rec lr;

    memset(&lr, 0, sizeof lr);
    lr.id = 1000 + (int64_t)seed;
    lr.device_code_hash = hash_of(seed * 2 + 1000);
    lr.scan_hash = hash_of(seed * 2 + 1001);
    snprintf(lr.user_code, sizeof lr.user_code, "%s", user_code);
    snprintf(lr.client_id, sizeof lr.client_id, "tv-app");
    snprintf(lr.scope, sizeof lr.scope, "openid");
    snprintf(lr.device_name, sizeof lr.device_name, "Living Room TV");
    snprintf(lr.device_kind, sizeof lr.device_kind, "tv");
    snprintf(lr.device_platform, sizeof lr.device_platform, "Samsung Tizen");
    snprintf(lr.address, sizeof lr.address, "198.51.100.7");
    lr.created_ms = created;
    lr.updated_ms = created;
    lr.expires_ms = created + TTL;
    lr.interval_s = 5;
    lr.state = QRL_LR_PENDING;
    return lr;
}

static int64_t add_lr(qrl_store *st, unsigned seed, const char *user_code, int64_t created)
{
    qrl_lr_rec lr = make_lr(seed, user_code, created);

    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    return lr.id;
}

static qrl_err move(qrl_store *st, int64_t id, unsigned from_mask, qrl_lr_state to, int64_t now)
{
    qrl_lr_cas cas = {.id = id, .from_mask = from_mask, .to = to, .now_ms = now};

    return st->m->lr_transition(st, &cas);
}

static qrl_lr_cas scan_cas(int64_t id, int64_t phone)
{
    return (qrl_lr_cas){.id = id,
                        .from_mask = QRL_LR_BIT(QRL_LR_PENDING),
                        .to = QRL_LR_SCANNED,
                        .now_ms = T0 + 1000,
                        .set_claimed_device_id = phone};
}

static qrl_lr_cas approve_cas(int64_t id, int64_t acct, int64_t phone)
{
    return (qrl_lr_cas){.id = id,
                        .from_mask = QRL_LR_BIT(QRL_LR_SCANNED),
                        .to = QRL_LR_APPROVED,
                        .now_ms = T0 + 2000,
                        .require_claimed_by = phone,
                        .set_account_id = acct,
                        .set_approving_device_id = phone};
}

/* A request taken to APPROVED by phone `phone` of account `acct`. */
static int64_t add_approved_lr(qrl_store *st, unsigned seed, const char *code, int64_t acct,
                               int64_t phone)
{
    int64_t id = add_lr(st, seed, code, T0);
    qrl_lr_cas scan = scan_cas(id, phone), approve = approve_cas(id, acct, phone);

    assert_int_equal(st->m->lr_transition(st, &scan), QRL_OK);
    assert_int_equal(st->m->lr_transition(st, &approve), QRL_OK);
    return id;
}

/* --- the notify hook ---------------------------------------------------------------------- */

#define SEEN_MAX 256
struct seen {
    pthread_mutex_t mu;
    int64_t ids[SEEN_MAX];
    int n;
    int zeros; /* fn(ud, 0): "anything may have changed" */
};

static void on_notify(void *ud, int64_t id)
{
    struct seen *s = ud;

    pthread_mutex_lock(&s->mu);
    if (id == 0)
        s->zeros++;
    else if (s->n < SEEN_MAX)
        s->ids[s->n++] = id;
    pthread_mutex_unlock(&s->mu);
}

static int seen_has(struct seen *s, int64_t id)
{
    int found = 0;

    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++)
        found |= s->ids[i] == id;
    pthread_mutex_unlock(&s->mu);
    return found;
}

static int seen_zeros(struct seen *s)
{
    pthread_mutex_lock(&s->mu);
    int z = s->zeros;
    pthread_mutex_unlock(&s->mu);
    return z;
}

/* Waits up to `ms` for id (or, for id 0, for more than `zeros` zero calls); returns the
 * milliseconds it took, or -1. */
static int64_t wait_seen(struct seen *s, int64_t id, int zeros, int64_t ms)
{
    int64_t t0 = ms_now();

    while (ms_now() - t0 < ms) {
        if (id != 0 ? seen_has(s, id) : seen_zeros(s) > zeros)
            return ms_now() - t0;
        usleep(2000);
    }
    return -1;
}

/* --- open, schema ------------------------------------------------------------------------- */

static void test_open_migrate_reopen(void **state)
{
    fixture *f = *state;
    qrl_account_rec a;

    assert_int_equal(f->st->m->version, QRL_STORE_VERSION);
    assert_string_equal(f->st->m->name, "postgres");
    assert_null(f->st->m->lr_stamp);
    assert_non_null(f->st->m->lr_poll);
    assert_int_equal(admin_int(f->uri, "SELECT version FROM qrlogin_schema"), 2);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM pg_tables WHERE tablename IN"
                                       " ('accounts', 'devices', 'tokens', 'login_requests',"
                                       " 'rate_limits', 'passkeys', 'notices', 'notice_acks')"),
                     8);
    add_account(f->st, "alice", 0);
    reopen(f);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM qrlogin_schema"), 1);
    assert_int_equal(f->st->m->account_by_name(f->st, "alice", &a), QRL_OK);
    assert_string_equal(a.display_name, "User alice");
    /* Read scopes are accepted and change nothing. */
    assert_int_equal(f->st->m->read_begin(f->st), QRL_OK);
    assert_int_equal(f->st->m->account_get(f->st, a.id, &a), QRL_OK);
    f->st->m->read_end(f->st);
    assert_int_equal(f->st->m->read_begin(NULL), QRL_ERR_INVALID);
}

/* qrl_store_open picks the backend by the scheme. */
static void test_store_open_dispatch(void **state)
{
    fixture *f = *state;
    char dir[] = "/tmp/qrl_pg_open_XXXXXX", path[64], alt[340], err[256];
    qrl_store *st = NULL;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.db", dir);
    assert_int_equal(qrl_store_open(path, &st, err, sizeof err), QRL_OK);
    assert_string_equal(st->m->name, "sqlite");
    st->m->close(st);
    snprintf(alt, sizeof alt, "%s-wal", path);
    unlink(alt);
    snprintf(alt, sizeof alt, "%s-shm", path);
    unlink(alt);
    snprintf(alt, sizeof alt, "%s-stamps", path);
    unlink(alt);
    unlink(path);
    rmdir(dir);

    assert_int_equal(qrl_store_open(f->uri, &st, err, sizeof err), QRL_OK);
    assert_string_equal(st->m->name, "postgres");
    st->m->close(st);
    /* postgres:// as well as postgresql:// */
    assert_int_equal(strncmp(f->uri, "postgresql://", 13), 0);
    snprintf(alt, sizeof alt, "postgres://%s", f->uri + 13);
    assert_int_equal(qrl_store_open(alt, &st, err, sizeof err), QRL_OK);
    assert_string_equal(st->m->name, "postgres");
    st->m->close(st);
    assert_int_equal(qrl_store_open(NULL, &st, err, sizeof err), QRL_ERR_INVALID);
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    char err[256], uri[400];
    qrl_store *st = (qrl_store *)1;

    assert_int_equal(qrl_store_postgres_open(NULL, &st, err, sizeof err), QRL_ERR_INVALID);
    assert_int_equal(qrl_store_postgres_open("", &st, err, sizeof err), QRL_ERR_INVALID);
    assert_null(st);

    /* Nobody listens there; the message says why and never holds the password. */
    err[0] = '\0';
    assert_int_equal(
        qrl_store_postgres_open("postgresql://qrl:s3cretPW@127.0.0.1:1/nodb", &st, err, sizeof err),
        QRL_ERR_STORE);
    assert_null(st);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "s3cretPW"));
    /* A database that does not exist. */
    uri_of("no_such_database", uri, sizeof uri);
    assert_int_equal(qrl_store_postgres_open(uri, &st, err, sizeof err), QRL_ERR_STORE);
    assert_non_null(strstr(err, "no_such_database"));

    /* Another program's database: a table of ours but no qrlogin_schema. */
    {
        char db[32], other[320];
        new_database(db, sizeof db, other, sizeof other);
        admin_exec(other, "CREATE TABLE tokens (x int)");
        err[0] = '\0';
        assert_int_equal(qrl_store_postgres_open(other, &st, err, sizeof err), QRL_ERR_STORE);
        assert_non_null(strstr(err, "another program"));
        assert_int_equal(admin_int(other, "SELECT to_regclass('qrlogin_schema') IS NULL"), 1);
        drop_database(db);
    }

    /* A schema newer than this program must not be touched. */
    f->st->m->close(f->st);
    f->st = NULL;
    admin_exec(f->uri, "UPDATE qrlogin_schema SET version = 99");
    err[0] = '\0';
    assert_int_equal(qrl_store_postgres_open(f->uri, &st, err, sizeof err), QRL_ERR_STORE);
    assert_null(st);
    assert_non_null(strstr(err, "99"));
    assert_non_null(strstr(err, "newer"));
    assert_int_equal(admin_int(f->uri, "SELECT version FROM qrlogin_schema"), 99);
}

/* Several nodes start at once on an empty database: one migrates, the others wait for it and
 * find the schema made; none fails. */
struct opener {
    const char *uri;
    pthread_barrier_t *barrier;
    qrl_store *st;
    qrl_err rc;
    char err[256];
};

static void *opener_main(void *arg)
{
    struct opener *o = arg;

    pthread_barrier_wait(o->barrier);
    o->rc = qrl_store_postgres_open(o->uri, &o->st, o->err, sizeof o->err);
    return NULL;
}

static void test_migrate_concurrently(void **state)
{
    enum { N = 6 };
    fixture *f = *state;
    char db[32], uri[320];
    pthread_t th[N];
    struct opener o[N];
    pthread_barrier_t barrier;

    (void)f;
    new_database(db, sizeof db, uri, sizeof uri);
    pthread_barrier_init(&barrier, NULL, N);
    for (int i = 0; i < N; i++) {
        o[i] = (struct opener){.uri = uri, .barrier = &barrier};
        assert_int_equal(pthread_create(&th[i], NULL, opener_main, &o[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < N; i++) {
        if (o[i].rc != QRL_OK)
            fail_msg("node %d: %s", i, o[i].err);
    }
    assert_int_equal(admin_int(uri, "SELECT count(*) FROM qrlogin_schema"), 1);
    assert_int_equal(admin_int(uri, "SELECT version FROM qrlogin_schema"), 2);
    /* Every node works on the one schema. */
    add_account(o[0].st, "alice", 0);
    for (int i = 0; i < N; i++) {
        qrl_account_rec a;
        assert_int_equal(o[i].st->m->account_by_name(o[i].st, "alice", &a), QRL_OK);
        o[i].st->m->close(o[i].st);
    }
    drop_database(db);
}

/* --- accounts, devices, tokens ------------------------------------------------------------ */

static void test_accounts(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_account_rec a, b;
    int64_t id = add_account(st, "alice", 0);
    char pw[QRL_PWHASH_MAX + 2];

    memset(&b, 0, sizeof b);
    snprintf(b.username, sizeof b.username, "alice");
    assert_int_equal(st->m->account_create(st, &b), QRL_ERR_EXISTS);
    snprintf(b.username, sizeof b.username, "Alice"); /* case-sensitive: a different name */
    assert_int_equal(st->m->account_create(st, &b), QRL_OK);
    assert_true(b.id != id);

    assert_int_equal(st->m->account_get(st, id, &a), QRL_OK);
    assert_int_equal(a.id, id);
    assert_string_equal(a.username, "alice");
    assert_string_equal(a.display_name, "User alice");
    assert_string_equal(a.pw_hash, "$argon2id$v=19$m=65536,t=2,p=1$fake");
    assert_int_equal(a.created_ms, T0);
    assert_int_equal(a.disabled, 0);
    assert_int_equal(st->m->account_get(st, id + 100, &a), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->account_by_name(st, "Alice", &a), QRL_OK);
    assert_int_equal(a.id, b.id);
    assert_int_equal(st->m->account_by_name(st, "ALICE", &a), QRL_ERR_NOT_FOUND);

    assert_int_equal(st->m->account_set_password(st, id, "$argon2id$new"), QRL_OK);
    assert_int_equal(st->m->account_get(st, id, &a), QRL_OK);
    assert_string_equal(a.pw_hash, "$argon2id$new");
    assert_int_equal(st->m->account_set_password(st, id + 100, "$argon2id$new"), QRL_ERR_NOT_FOUND);

    /* Over-long strings are refused, never truncated. */
    memset(pw, 'p', sizeof pw - 1);
    pw[sizeof pw - 1] = '\0';
    assert_int_equal(st->m->account_set_password(st, id, pw), QRL_ERR_INVALID);
    memset(b.username, 'u', sizeof b.username);
    assert_int_equal(st->m->account_create(st, &b), QRL_ERR_INVALID);
    assert_int_equal(st->m->account_by_name(st, pw, &a), QRL_ERR_INVALID);

    /* The longest legal values and a disabled flag round-trip. */
    memset(&b, 0, sizeof b);
    memset(b.username, 'n', QRL_MAX_USERNAME);
    memset(b.display_name, 'd', QRL_MAX_DISPLAY_NAME);
    memset(b.pw_hash, 'h', QRL_PWHASH_MAX);
    b.disabled = 1;
    assert_int_equal(st->m->account_create(st, &b), QRL_OK);
    assert_int_equal(st->m->account_by_name(st, b.username, &a), QRL_OK);
    assert_int_equal(strlen(a.username), QRL_MAX_USERNAME);
    assert_int_equal(strlen(a.display_name), QRL_MAX_DISPLAY_NAME);
    assert_int_equal(strlen(a.pw_hash), QRL_PWHASH_MAX);
    assert_int_equal(a.disabled, 1);
}

static void test_devices(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0), other = add_account(st, "bob", 0);
    qrl_device_rec d = make_device(acct, "Pixel", T0), list[8], got;
    qrl_token_rec tok[2] = {make_token(1, QRL_TOKEN_SESSION, T0, T0 + 1000000),
                            make_token(2, QRL_TOKEN_ACCESS, T0, T0 + 1000000)};
    qrl_token_rec t;
    unsigned char pk[QRL_PUBKEY_BYTES];
    int64_t ids[5];
    size_t n = 99;

    d.last_seen_ms = 5;
    d.revoked_ms = 7; /* ignored on create */
    assert_int_equal(st->m->device_create(st, &d, tok, 2), QRL_OK);
    assert_true(d.id > 0);
    assert_int_equal(d.last_seen_ms, T0);
    assert_int_equal(d.revoked_ms, 0);
    assert_int_equal(tok[0].device_id, d.id);
    assert_int_equal(st->m->token_lookup(st, &tok[1].hash, &t), QRL_OK);
    assert_int_equal(t.device_id, d.id);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.account_id, acct);
    assert_string_equal(got.name, "Pixel");
    assert_string_equal(got.kind, "phone");
    assert_string_equal(got.address, "192.0.2.10");
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.last_seen_ms, T0);
    assert_false(got.has_pubkey);
    assert_int_equal(st->m->device_get(st, d.id + 100, &got), QRL_ERR_NOT_FOUND);

    /* A failing token rolls the whole device back. */
    {
        qrl_device_rec d2 = make_device(acct, "Dup", T0);
        qrl_token_rec dup = make_token(1, QRL_TOKEN_SESSION, T0, T0 + 1);
        assert_int_equal(st->m->device_create(st, &d2, &dup, 1), QRL_ERR_EXISTS);
        assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM devices WHERE name = 'Dup'"), 0);
    }

    /* Listing: oldest first, revoked excluded, max honoured, other accounts invisible. */
    ids[0] = d.id;
    ids[1] = add_device(st, acct, "Laptop", T0 + 10);
    ids[2] = add_device(st, acct, "TV", T0 + 20);
    ids[3] = add_device(st, acct, "Tablet", T0 + 30);
    ids[4] = add_device(st, other, "Bob's phone", T0 + 5);
    assert_int_equal(st->m->device_revoke(st, acct, ids[2], T0 + 40), QRL_OK);
    assert_int_equal(st->m->device_list(st, acct, list, 8, &n), QRL_OK);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, ids[0]);
    assert_int_equal(list[1].id, ids[1]);
    assert_int_equal(list[2].id, ids[3]);
    assert_int_equal(st->m->device_list(st, acct, list, 2, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(st->m->device_list(st, acct, NULL, 0, &n), QRL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st->m->device_list(st, other, list, 8, &n), QRL_OK);
    assert_int_equal(n, 1);

    /* Touch: last seen and address; NULL keeps the address; revoked devices are not found. */
    assert_int_equal(st->m->device_touch(st, ids[1], T0 + 500, "2001:db8::1"), QRL_OK);
    assert_int_equal(st->m->device_touch(st, ids[1], T0 + 900, NULL), QRL_OK);
    assert_int_equal(st->m->device_get(st, ids[1], &got), QRL_OK);
    assert_int_equal(got.last_seen_ms, T0 + 900);
    assert_string_equal(got.address, "2001:db8::1");
    assert_int_equal(st->m->device_touch(st, ids[2], T0 + 900, NULL), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_touch(st, 999999, T0 + 900, NULL), QRL_ERR_NOT_FOUND);

    /* Public keys: only an active device of the account. */
    memset(pk, 0xab, sizeof pk);
    assert_int_equal(st->m->device_set_pubkey(st, other, ids[1], pk), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_set_pubkey(st, acct, ids[2], pk), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_set_pubkey(st, acct, ids[1], pk), QRL_OK);
    assert_int_equal(st->m->device_get(st, ids[1], &got), QRL_OK);
    assert_true(got.has_pubkey);
    assert_memory_equal(got.pubkey, pk, sizeof pk);

    /* Invalid input. */
    memset(d.name, 'x', sizeof d.name);
    assert_int_equal(st->m->device_create(st, &d, NULL, 0), QRL_ERR_INVALID);
}

static void test_device_revoke(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0), other = add_account(st, "bob", 0);
    qrl_device_rec d = make_device(acct, "Pixel", T0), got;
    qrl_token_rec tok[3] = {make_token(1, QRL_TOKEN_SESSION, T0, T0 + 1000000),
                            make_token(2, QRL_TOKEN_ACCESS, T0, T0 + 1000000),
                            make_token(3, QRL_TOKEN_REFRESH, T0, T0 + 1000000)};
    int64_t keep = add_device(st, acct, "Other", T0);
    qrl_token_rec t, kt = make_token(4, QRL_TOKEN_ACCESS, T0, T0 + 1000000);

    tok[2].revoked_ms = T0 + 5; /* revoked on its own before */
    assert_int_equal(st->m->device_create(st, &d, tok, 3), QRL_OK);
    kt.device_id = keep;
    assert_int_equal(st->m->token_insert(st, &kt), QRL_OK);

    assert_int_equal(st->m->device_revoke(st, other, d.id, T0 + 100), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_revoke(st, acct, d.id + 100, T0 + 100), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_revoke(st, acct, d.id, 0), QRL_ERR_INVALID);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, 0);

    assert_int_equal(st->m->device_revoke(st, acct, d.id, T0 + 100), QRL_OK);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 100);
    assert_int_equal(st->m->token_lookup(st, &tok[0].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 100);
    assert_int_equal(t.device_revoked, 1);
    assert_int_equal(st->m->token_lookup(st, &tok[2].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 5);
    assert_int_equal(st->m->token_lookup(st, &kt.hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, 0);
    assert_int_equal(t.device_revoked, 0);
    /* Idempotent; and another account still cannot see it. */
    assert_int_equal(st->m->device_revoke(st, acct, d.id, T0 + 999), QRL_OK);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 100);
    assert_int_equal(st->m->device_revoke(st, other, d.id, T0 + 999), QRL_ERR_NOT_FOUND);
}

static void test_tokens(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0), off = add_account(st, "mallory", 1);
    int64_t dev = add_device(st, acct, "Pixel", T0), offdev = add_device(st, off, "Old", T0);
    qrl_token_rec t = make_token(7, QRL_TOKEN_REFRESH, T0, T0 + 5000), got, tok;
    qrl_hash unknown = hash_of(999);
    qrl_account_rec a;
    qrl_device_rec d;

    t.device_id = dev;
    assert_int_equal(st->m->token_insert(st, &t), QRL_OK);
    assert_int_equal(st->m->token_insert(st, &t), QRL_ERR_EXISTS);
    memset(&got, 0xff, sizeof got);
    assert_int_equal(st->m->token_lookup(st, &t.hash, &got), QRL_OK);
    assert_memory_equal(got.hash.b, t.hash.b, QRL_HASH_BYTES);
    assert_int_equal(got.kind, QRL_TOKEN_REFRESH);
    assert_int_equal(got.device_id, dev);
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.expires_ms, T0 + 5000);
    assert_int_equal(got.used_ms, 0);
    assert_int_equal(got.revoked_ms, 0);
    assert_string_equal(got.client_id, "tv-app");
    assert_string_equal(got.scope, "openid profile");
    assert_int_equal(got.account_id, acct);
    assert_int_equal(got.device_revoked, 0);
    assert_int_equal(got.account_disabled, 0);

    t = make_token(8, QRL_TOKEN_ACCESS, T0, T0 + 5000);
    t.device_id = offdev;
    assert_int_equal(st->m->token_insert(st, &t), QRL_OK);
    assert_int_equal(st->m->token_lookup(st, &t.hash, &got), QRL_OK);
    assert_int_equal(got.account_disabled, 1);
    assert_int_equal(st->m->token_lookup(st, &unknown, &got), QRL_ERR_NOT_FOUND);

    assert_int_equal(st->m->token_revoke(st, &t.hash, T0 + 10), QRL_OK);
    assert_int_equal(st->m->token_revoke(st, &t.hash, T0 + 20), QRL_OK);
    assert_int_equal(st->m->token_lookup(st, &t.hash, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 10);
    assert_int_equal(st->m->token_revoke(st, &unknown, T0 + 20), QRL_ERR_NOT_FOUND);

    /* token_auth reads what token_lookup, account_get and device_get read, in one lookup. */
    t = make_token(9, QRL_TOKEN_SESSION, T0, T0 + 5000);
    t.device_id = dev;
    assert_int_equal(st->m->token_insert(st, &t), QRL_OK);
    assert_int_equal(st->m->token_auth(st, &t.hash, &tok, &a, &d), QRL_OK);
    assert_int_equal(st->m->token_lookup(st, &t.hash, &got), QRL_OK);
    assert_memory_equal(&tok, &got, sizeof tok);
    assert_string_equal(a.username, "alice");
    assert_int_equal(a.id, acct);
    assert_string_equal(d.name, "Pixel");
    assert_int_equal(d.id, dev);
    assert_int_equal(st->m->token_auth(st, &unknown, &tok, &a, &d), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->token_auth(st, NULL, &tok, &a, &d), QRL_ERR_INVALID);

    /* Invalid input; a token for a device that does not exist. */
    t = make_token(10, (qrl_token_kind)0, T0, T0 + 1);
    assert_int_equal(st->m->token_insert(st, &t), QRL_ERR_INVALID);
    t = make_token(10, QRL_TOKEN_ACCESS, T0, T0 + 1);
    t.device_id = dev + 1000;
    assert_int_equal(st->m->token_insert(st, &t), QRL_ERR_STORE); /* foreign key */
}

/* Backend failures are logged without any bound value: the server's DETAIL of a violated key
 * quotes the key (here a token's hash), and must not reach the log. */
static void test_log_has_no_values(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    char path[] = "/tmp/qrl_pg_log_XXXXXX", buf[4096];
    int64_t acct = add_account(st, "alice", 0), dev = add_device(st, acct, "Pixel", T0);
    qrl_token_rec t = make_token(77, QRL_TOKEN_ACCESS, T0, T0 + 1);
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    ssize_t n;
    char hex[3 * QRL_HASH_BYTES + 1];

    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    t.device_id = dev + 1000; /* foreign key violation: logged */
    assert_int_equal(st->m->token_insert(st, &t), QRL_ERR_STORE);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "qrlogin: postgres: "));
    for (size_t i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", t.hash.b[i]);
    assert_null(strstr(buf, hex));
    snprintf(hex, sizeof hex, "%lld", (long long)(dev + 1000));
    assert_null(strstr(buf, hex));
}

static void test_token_rotate(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    qrl_device_rec d = make_device(acct, "TV", T0), got;
    qrl_token_rec rt[2] = {make_token(1, QRL_TOKEN_ACCESS, T0, T0 + 3600000),
                           make_token(2, QRL_TOKEN_REFRESH, T0, T0 + 86400000)};
    qrl_token_rec fresh[2] = {make_token(3, QRL_TOKEN_ACCESS, T0 + 100, T0 + 3600100),
                              make_token(4, QRL_TOKEN_REFRESH, T0 + 100, T0 + 86400100)};
    qrl_token_rec again[2] = {make_token(5, QRL_TOKEN_ACCESS, T0 + 200, T0 + 3600200),
                              make_token(6, QRL_TOKEN_REFRESH, T0 + 200, T0 + 86400200)};
    qrl_token_rec late[1] = {make_token(7, QRL_TOKEN_REFRESH, T0 + 300, T0 + 999999)};
    qrl_token_rec old, t;
    qrl_hash unknown = hash_of(4242);

    assert_int_equal(st->m->device_create(st, &d, rt, 2), QRL_OK);
    assert_int_equal(st->m->token_rotate(st, &rt[0].hash, T0 + 100, fresh, 2, &old),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->token_rotate(st, &unknown, T0 + 100, fresh, 2, &old),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->token_rotate(st, &rt[1].hash, T0 + 100, fresh, 2, &old), QRL_OK);
    assert_int_equal(old.device_id, d.id);
    assert_int_equal(old.account_id, acct);
    assert_int_equal(fresh[1].device_id, d.id);
    assert_int_equal(st->m->token_lookup(st, &rt[1].hash, &t), QRL_OK);
    assert_int_equal(t.used_ms, T0 + 100);
    assert_int_equal(st->m->token_rotate(st, &fresh[1].hash, T0 + 200, again, 2, NULL), QRL_OK);

    /* Reuse of the first (rotated) token: the whole device goes, and that is committed. */
    assert_int_equal(st->m->token_rotate(st, &rt[1].hash, T0 + 300, late, 1, &old),
                     QRL_ERR_TOKEN_REUSED);
    assert_int_equal(old.device_id, d.id);
    assert_int_equal(st->m->token_lookup(st, &late[0].hash, &t), QRL_ERR_NOT_FOUND);
    reopen(f);
    st = f->st;
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 300);
    assert_int_equal(st->m->token_lookup(st, &again[1].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 300);
    assert_int_equal(st->m->token_rotate(st, &again[1].hash, T0 + 400, NULL, 0, NULL),
                     QRL_ERR_REVOKED);
}

static void test_token_rotate_refused(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0), off = add_account(st, "mallory", 1);
    int64_t dev = add_device(st, acct, "TV", T0), offdev = add_device(st, off, "TV", T0);
    qrl_token_rec exp = make_token(1, QRL_TOKEN_REFRESH, T0, T0 + 1000);
    qrl_token_rec rev = make_token(2, QRL_TOKEN_REFRESH, T0, T0 + 100000);
    qrl_token_rec dis = make_token(3, QRL_TOKEN_REFRESH, T0, T0 + 100000);
    qrl_token_rec fresh[1] = {make_token(10, QRL_TOKEN_REFRESH, T0, T0 + 100000)};
    qrl_token_rec t, old;

    exp.device_id = dev;
    rev.device_id = dev;
    dis.device_id = offdev;
    assert_int_equal(st->m->token_insert(st, &exp), QRL_OK);
    assert_int_equal(st->m->token_insert(st, &rev), QRL_OK);
    assert_int_equal(st->m->token_insert(st, &dis), QRL_OK);
    assert_int_equal(st->m->token_revoke(st, &rev.hash, T0 + 1), QRL_OK);
    assert_int_equal(st->m->token_rotate(st, &exp.hash, T0 + 1000, fresh, 1, &old),
                     QRL_ERR_EXPIRED);
    assert_int_equal(old.expires_ms, T0 + 1000);
    assert_int_equal(st->m->token_lookup(st, &fresh[0].hash, &t), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->token_rotate(st, &rev.hash, T0 + 10, fresh, 1, NULL), QRL_ERR_REVOKED);
    assert_int_equal(st->m->token_rotate(st, &dis.hash, T0 + 10, fresh, 1, NULL), QRL_ERR_REVOKED);
    /* An expired, already used token is just expired: no revocation. */
    assert_int_equal(st->m->token_rotate(st, &exp.hash, T0 + 999, fresh, 1, NULL), QRL_OK);
    assert_int_equal(st->m->token_rotate(st, &exp.hash, T0 + 5000, NULL, 0, NULL), QRL_ERR_EXPIRED);
    {
        qrl_device_rec got;
        assert_int_equal(st->m->device_get(st, dev, &got), QRL_OK);
        assert_int_equal(got.revoked_ms, 0);
    }
    /* A clash of a new token's hash rolls the rotation back. */
    {
        qrl_token_rec r = make_token(20, QRL_TOKEN_REFRESH, T0, T0 + 100000);
        qrl_token_rec clash[2] = {make_token(21, QRL_TOKEN_ACCESS, T0, T0 + 1),
                                  make_token(2, QRL_TOKEN_REFRESH, T0, T0 + 1)};
        r.device_id = dev;
        assert_int_equal(st->m->token_insert(st, &r), QRL_OK);
        assert_int_equal(st->m->token_rotate(st, &r.hash, T0 + 10, clash, 2, NULL), QRL_ERR_EXISTS);
        assert_int_equal(st->m->token_lookup(st, &r.hash, &t), QRL_OK);
        assert_int_equal(t.used_ms, 0);
        assert_int_equal(st->m->token_lookup(st, &clash[0].hash, &t), QRL_ERR_NOT_FOUND);
    }
    assert_int_equal(st->m->token_rotate(st, &exp.hash, 0, NULL, 0, NULL), QRL_ERR_INVALID);
}

/* --- login requests ----------------------------------------------------------------------- */

static void test_lr_create_find(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_lr_rec lr = make_lr(1, "WDJBMJHT", T0), b, got;
    qrl_lr_secret_key dc, scan, bad;
    int64_t first, newer;

    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    first = lr.id;
    assert_int_equal(st->m->lr_get(st, first, &got), QRL_OK);
    assert_memory_equal(got.device_code_hash.b, lr.device_code_hash.b, QRL_HASH_BYTES);
    assert_memory_equal(got.scan_hash.b, lr.scan_hash.b, QRL_HASH_BYTES);
    assert_string_equal(got.user_code, "WDJBMJHT");
    assert_string_equal(got.client_id, "tv-app");
    assert_string_equal(got.scope, "openid");
    assert_string_equal(got.device_name, "Living Room TV");
    assert_string_equal(got.device_kind, "tv");
    assert_string_equal(got.device_platform, "Samsung Tizen");
    assert_string_equal(got.address, "198.51.100.7");
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.expires_ms, T0 + TTL);
    assert_int_equal(got.interval_s, 5);
    assert_int_equal(got.state, QRL_LR_PENDING);
    assert_int_equal(got.updated_ms, T0);
    assert_int_equal(got.claimed_device_id, 0);
    assert_string_equal(got.nonce, "");
    assert_int_equal(st->m->lr_get(st, first + 100, &got), QRL_ERR_NOT_FOUND);

    /* Same user code while the first is alive: taken; same id: taken. */
    b = make_lr(2, "WDJBMJHT", T0 + TTL - 1);
    assert_int_equal(st->m->lr_create(st, &b), QRL_ERR_EXISTS);
    b = make_lr(3, "BCDFGHJK", T0);
    b.id = first;
    assert_int_equal(st->m->lr_create(st, &b), QRL_ERR_EXISTS);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM login_requests"), 1);
    b.id = 0;
    assert_int_equal(st->m->lr_create(st, &b), QRL_ERR_INVALID);

    /* Lookups. */
    dc = (qrl_lr_secret_key){.id = first, .hash = lr.device_code_hash};
    scan = (qrl_lr_secret_key){.id = first, .hash = lr.scan_hash};
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &dc, T0, &got), QRL_OK);
    assert_int_equal(got.id, first);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_SCAN, &scan, T0, &got), QRL_OK);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0, &got), QRL_OK);
    assert_int_equal(got.id, first);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_SCAN, &dc, T0, &got), QRL_ERR_NOT_FOUND);
    bad = dc;
    bad.hash.b[QRL_HASH_BYTES - 1] ^= 1;
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &bad, T0, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0 + TTL, &got),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &dc, T0 + 10 * TTL, &got), QRL_OK);
    assert_int_equal(st->m->lr_find(st, (qrl_lr_key)0, "WDJBMJHT", T0, &got), QRL_ERR_INVALID);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHTW", T0, &got),
                     QRL_ERR_INVALID);

    /* Once the first has expired (expires_ms <= created_ms of the new one) the code is free,
     * though the first still says PENDING; the newest unexpired request then answers it. */
    b = make_lr(4, "WDJBMJHT", T0 + TTL);
    assert_int_equal(st->m->lr_create(st, &b), QRL_OK);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0 + TTL, &got), QRL_OK);
    assert_int_equal(got.id, b.id);

    /* A decided request does not hold its code, but is still found by it until it expires. */
    lr = make_lr(5, "ZZZZZZZZ", T0);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_int_equal(move(st, lr.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 10), QRL_OK);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "ZZZZZZZZ", T0 + 15, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_DENIED);
    newer = add_lr(st, 6, "ZZZZZZZZ", T0 + 20);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "ZZZZZZZZ", T0 + 25, &got), QRL_OK);
    assert_int_equal(got.id, newer);
    /* ... but a SCANNED or APPROVED one does. */
    assert_int_equal(move(st, newer, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 30), QRL_OK);
    lr = make_lr(7, "ZZZZZZZZ", T0 + 40);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_EXISTS);
    assert_int_equal(move(st, newer, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_APPROVED, T0 + 50), QRL_OK);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_EXISTS);

    /* Invalid input; the platform at its limit, and none, come back as they went in. */
    lr = make_lr(8, "QQQQQQQQ", T0);
    lr.state = QRL_LR_SCANNED;
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_INVALID);
    lr = make_lr(8, "QQQQQQQQ", T0);
    memset(lr.device_platform, 'p', sizeof lr.device_platform);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_INVALID);
    lr = make_lr(9, "RRRRRRRR", T0);
    memset(lr.device_platform, 'p', QRL_MAX_DEVICE_PLATFORM);
    lr.device_platform[QRL_MAX_DEVICE_PLATFORM] = '\0';
    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_int_equal(st->m->lr_get(st, lr.id, &got), QRL_OK);
    assert_string_equal(got.device_platform, lr.device_platform);
    lr = make_lr(10, "SSSSSSSS", T0);
    lr.device_platform[0] = '\0';
    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_int_equal(st->m->lr_get(st, lr.id, &got), QRL_OK);
    assert_string_equal(got.device_platform, "");
}

/* Store version 11: the key a request names (dpop_jkt) is written by lr_create and comes back
 * from every read of the request, whatever its state; a request that names none reads "". */
static void test_lr_dpop_jkt(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    static const char jkt[] = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    qrl_lr_rec lr = make_lr(1, "WDJBMJHT", T0), plain = make_lr(2, "BCDFGHJK", T0), got;
    qrl_lr_secret_key dc, scan;

    memcpy(lr.dpop_jkt, jkt, sizeof jkt);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_int_equal(st->m->lr_create(st, &plain), QRL_OK);
    assert_int_equal(st->m->lr_get(st, lr.id, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, jkt);
    dc = (qrl_lr_secret_key){.id = lr.id, .hash = lr.device_code_hash};
    scan = (qrl_lr_secret_key){.id = lr.id, .hash = lr.scan_hash};
    memset(&got, 0, sizeof got);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &dc, T0, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, jkt);
    memset(&got, 0, sizeof got);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_SCAN, &scan, T0, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, jkt);
    memset(&got, 0, sizeof got);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, jkt);
    assert_int_equal(st->m->lr_get(st, plain.id, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, "");
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "BCDFGHJK", T0, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, "");

    /* It stays through the request's life, and no transition touches the other's. */
    assert_int_equal(move(st, lr.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 10), QRL_OK);
    assert_int_equal(move(st, lr.id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_APPROVED, T0 + 20), QRL_OK);
    assert_int_equal(move(st, plain.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 30),
                     QRL_OK);
    assert_int_equal(st->m->lr_get(st, lr.id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
    assert_string_equal(got.dpop_jkt, jkt);
    assert_int_equal(st->m->lr_get(st, plain.id, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, "");

    /* A field without its terminating NUL is refused, and nothing is written. */
    lr = make_lr(3, "CCCCCCCC", T0);
    memset(lr.dpop_jkt, 'k', sizeof lr.dpop_jkt);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_INVALID);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM login_requests"), 2);
}

/* Two nodes drawing the same user code at once: exactly one gets it. */
struct code_race {
    qrl_store *st[2];
    pthread_barrier_t barrier;
    qrl_err rc[NTHREADS];
};
struct code_racer {
    struct code_race *r;
    int i;
};

static void *code_racer_main(void *arg)
{
    struct code_racer *me = arg;
    qrl_lr_rec lr = make_lr(100 + (unsigned)me->i, "XXXXXXXX", T0);
    qrl_store *st = me->r->st[me->i % 2];
    qrl_lr_rec warm;

    (void)st->m->lr_get(st, 1, &warm);
    pthread_barrier_wait(&me->r->barrier);
    me->r->rc[me->i] = st->m->lr_create(st, &lr);
    return NULL;
}

static void test_user_code_race(void **state)
{
    fixture *f = *state;
    struct code_race r;
    struct code_racer who[NTHREADS];
    pthread_t th[NTHREADS];
    int wins = 0;

    memset(&r, 0, sizeof r);
    r.st[0] = f->st;
    r.st[1] = node(f);
    pthread_barrier_init(&r.barrier, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        who[i] = (struct code_racer){.r = &r, .i = i};
        assert_int_equal(pthread_create(&th[i], NULL, code_racer_main, &who[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r.barrier);
    for (int i = 0; i < NTHREADS; i++) {
        if (r.rc[i] == QRL_OK)
            wins++;
        else
            assert_int_equal(r.rc[i], QRL_ERR_EXISTS);
    }
    assert_int_equal(wins, 1);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM login_requests"), 1);
    r.st[1]->m->close(r.st[1]);
}

static void test_lr_transition(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t id = add_lr(st, 1, "WDJBMJHT", T0);
    qrl_lr_rec got;
    qrl_lr_cas cas;

    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_APPROVED, T0 + 1),
                     QRL_ERR_CONFLICT);
    assert_int_equal(move(st, id + 100, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1),
                     QRL_ERR_CONFLICT);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_EXPIRED, T0 + TTL - 1),
                     QRL_ERR_CONFLICT);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + TTL),
                     QRL_ERR_CONFLICT);

    memset(&cas, 0, sizeof cas);
    cas.id = id;
    cas.from_mask = QRL_LR_BIT(QRL_LR_PENDING) | QRL_LR_BIT(QRL_LR_SCANNED);
    cas.to = QRL_LR_SCANNED;
    cas.now_ms = T0 + 1000;
    cas.set_claimed_device_id = 42;
    cas.set_nonce = "nonce-one";
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_OK);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_SCANNED);
    assert_int_equal(got.updated_ms, T0 + 1000);
    assert_int_equal(got.claimed_device_id, 42);
    assert_int_equal(got.account_id, 0);
    assert_string_equal(got.nonce, "nonce-one");

    /* require_claimed_by and require_nonce: another phone, or another nonce, loses. */
    memset(&cas, 0, sizeof cas);
    cas.id = id;
    cas.from_mask = QRL_LR_BIT(QRL_LR_SCANNED);
    cas.to = QRL_LR_APPROVED;
    cas.now_ms = T0 + 2000;
    cas.require_claimed_by = 43;
    cas.set_account_id = 7;
    cas.set_approving_device_id = 43;
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_ERR_CONFLICT);
    cas.require_claimed_by = 42;
    cas.set_approving_device_id = 42;
    cas.require_nonce = "nonce-two";
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_ERR_CONFLICT);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_SCANNED);
    assert_int_equal(got.updated_ms, T0 + 1000);
    cas.require_nonce = "nonce-one";
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_OK);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
    assert_int_equal(got.claimed_device_id, 42);
    assert_int_equal(got.account_id, 7);
    assert_int_equal(got.approving_device_id, 42);
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_ERR_CONFLICT);

    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_APPROVED), QRL_LR_EXPIRED, T0 + TTL - 1),
                     QRL_ERR_CONFLICT);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_APPROVED), QRL_LR_EXPIRED, T0 + TTL), QRL_OK);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_EXPIRED);
    assert_int_equal(got.account_id, 7);
    assert_int_equal(
        move(st, id,
             QRL_LR_BIT(QRL_LR_PENDING) | QRL_LR_BIT(QRL_LR_SCANNED) | QRL_LR_BIT(QRL_LR_APPROVED),
             QRL_LR_EXPIRED, T0 + TTL + 1),
        QRL_ERR_CONFLICT);

    memset(&cas, 0, sizeof cas);
    cas.id = id;
    cas.to = (qrl_lr_state)6;
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_ERR_INVALID);
}

static void test_lr_redeem(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0), phone = add_device(st, acct, "Pixel", T0), id;
    qrl_device_rec d = make_device(0, "Living Room TV", T0 + 3000), list[4];
    qrl_token_rec tok[2] = {make_token(1, QRL_TOKEN_ACCESS, T0 + 3000, T0 + 3603000),
                            make_token(2, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000)};
    qrl_lr_state s;
    qrl_lr_rec got;
    qrl_token_rec t;
    size_t n;

    id = add_lr(st, 1, "WDJBMJHT", T0);
    s = QRL_LR_EXPIRED;
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, tok, 2, &s), QRL_ERR_CONFLICT);
    assert_int_equal(s, QRL_LR_PENDING);
    assert_int_equal(st->m->lr_redeem(st, id + 100, T0 + 3000, &d, tok, 2, &s), QRL_ERR_NOT_FOUND);

    id = add_approved_lr(st, 2, "BCDFGHJK", acct, phone);
    assert_int_equal(st->m->lr_redeem(st, id, T0 + TTL, &d, tok, 2, NULL), QRL_ERR_EXPIRED);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);

    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, tok, 2, &s), QRL_OK);
    assert_int_equal(s, QRL_LR_REDEEMED);
    assert_true(d.id > phone);
    assert_int_equal(d.account_id, acct);
    assert_int_equal(tok[1].device_id, d.id);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_REDEEMED);
    assert_int_equal(got.redeemed_device_id, d.id);
    assert_int_equal(got.updated_ms, T0 + 3000);
    assert_int_equal(st->m->token_lookup(st, &tok[1].hash, &t), QRL_OK);
    assert_int_equal(t.account_id, acct);
    assert_int_equal(st->m->device_list(st, acct, list, 4, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[1].name, "Living Room TV");
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3001, &d, tok, 2, &s), QRL_ERR_CONFLICT);
    assert_int_equal(s, QRL_LR_REDEEMED);

    /* The approving phone was revoked meanwhile: DENIED, committed. */
    {
        int64_t phone2 = add_device(st, acct, "Old phone", T0);
        qrl_device_rec d2 = make_device(0, "TV 2", T0 + 3000);
        qrl_token_rec tok2[1] = {make_token(3, QRL_TOKEN_REFRESH, T0, T0 + 99999)};

        id = add_approved_lr(st, 3, "CDFGHJKL", acct, phone2);
        assert_int_equal(st->m->device_revoke(st, acct, phone2, T0 + 2500), QRL_OK);
        assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d2, tok2, 1, &s), QRL_ERR_DENIED);
        assert_int_equal(s, QRL_LR_DENIED);
        assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
        assert_int_equal(got.state, QRL_LR_DENIED);
        assert_int_equal(got.redeemed_device_id, 0);
        assert_int_equal(st->m->token_lookup(st, &tok2[0].hash, &t), QRL_ERR_NOT_FOUND);
    }
    /* The approving account was disabled: DENIED too. */
    {
        int64_t off = add_account(st, "mallory", 1), offphone = add_device(st, off, "Phone", T0);
        qrl_device_rec d3 = make_device(0, "TV 3", T0 + 3000);

        id = add_approved_lr(st, 4, "DFGHJKLM", off, offphone);
        assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d3, NULL, 0, NULL), QRL_ERR_DENIED);
    }
    /* Invalid input changes nothing. */
    id = add_approved_lr(st, 5, "FGHJKLMN", acct, phone);
    d = make_device(0, "TV", T0);
    memset(d.kind, 'k', sizeof d.kind);
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, NULL, 0, NULL), QRL_ERR_INVALID);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
}

static void test_lr_by_device(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t phone = add_device(st, acct, "Pixel", T0), other = add_device(st, acct, "Other", T0);
    int64_t scanned, approved, redeemed, ids[8];
    qrl_lr_cas cas;
    qrl_device_rec d = make_device(0, "TV", T0);
    size_t n;

    add_lr(st, 1, "BBBBBBBB", T0);
    scanned = add_lr(st, 2, "CCCCCCCC", T0);
    cas = scan_cas(scanned, phone);
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_OK);
    approved = add_approved_lr(st, 3, "DDDDDDDD", acct, phone);
    redeemed = add_approved_lr(st, 4, "FFFFFFFF", acct, phone);
    assert_int_equal(st->m->lr_redeem(st, redeemed, T0 + 3000, &d, NULL, 0, NULL), QRL_OK);
    add_approved_lr(st, 5, "GGGGGGGG", acct, other);

    assert_int_equal(st->m->lr_by_device(st, phone, ids, 8, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], scanned);
    assert_int_equal(ids[1], approved);
    assert_int_equal(st->m->lr_by_device(st, phone, ids, 1, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(st->m->lr_by_device(st, other, ids, 8, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(st->m->lr_by_device(st, 9999, ids, 8, &n), QRL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st->m->lr_by_device(st, phone, NULL, 0, &n), QRL_OK);
    assert_int_equal(n, 0);
}

static void test_lr_approve_redeem(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_lr_rec lr;
    qrl_token_rec tok[2], probe;
    qrl_device_rec dev;
    int64_t alice = add_account(st, "alice", 0), phone = add_device(st, alice, "Phone", T0);
    int64_t id = add_lr(st, 1, "BCDFGHJK", T0), id2;
    qrl_lr_cas cas = {.id = id,
                      .from_mask = QRL_LR_BIT(QRL_LR_SCANNED),
                      .to = QRL_LR_APPROVED,
                      .now_ms = T0 + 2,
                      .set_account_id = alice,
                      .set_approving_device_id = phone,
                      .require_claimed_by = 99};

    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1), QRL_OK);
    dev = make_device(0, "Living Room TV", T0 + 2);
    tok[0] = make_token(1, QRL_TOKEN_ACCESS, T0 + 2, T0 + 100000);
    tok[1] = make_token(2, QRL_TOKEN_REFRESH, T0 + 2, T0 + 100000);
    assert_int_equal(st->m->lr_approve_redeem(st, &cas, &dev, tok, 2), QRL_ERR_CONFLICT);
    assert_int_equal(st->m->lr_get(st, id, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_SCANNED);
    assert_int_equal(st->m->token_lookup(st, &tok[0].hash, &probe), QRL_ERR_NOT_FOUND);

    cas.require_claimed_by = 0;
    assert_int_equal(st->m->lr_approve_redeem(st, &cas, &dev, tok, 2), QRL_OK);
    assert_int_equal(dev.account_id, alice);
    assert_int_equal(st->m->lr_get(st, id, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_REDEEMED);
    assert_int_equal(lr.approving_device_id, phone);
    assert_int_equal(lr.redeemed_device_id, dev.id);
    assert_int_equal(st->m->token_lookup(st, &tok[1].hash, &probe), QRL_OK);
    assert_int_equal(probe.device_id, dev.id);

    /* If redemption would fail (approver revoked), the approval is undone as well. */
    id2 = add_lr(st, 2, "CDFGHJKL", T0);
    assert_int_equal(move(st, id2, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1), QRL_OK);
    assert_int_equal(st->m->device_revoke(st, alice, phone, T0 + 3), QRL_OK);
    cas.id = id2;
    cas.now_ms = T0 + 4;
    dev = make_device(0, "Kitchen TV", T0 + 4);
    tok[0] = make_token(3, QRL_TOKEN_ACCESS, T0 + 4, T0 + 100000);
    tok[1] = make_token(4, QRL_TOKEN_REFRESH, T0 + 4, T0 + 100000);
    assert_int_equal(st->m->lr_approve_redeem(st, &cas, &dev, tok, 2), QRL_ERR_DENIED);
    assert_int_equal(st->m->lr_get(st, id2, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_SCANNED);
}

/* RFC 8628 section 3.5 kept in the database (store.h, lr_poll): a poll sooner than the interval
 * (less the slack) is slow_down and adds the step, up to the ceiling; exempt polls neither
 * count nor are recorded; two nodes see one history. */
static void test_lr_poll(void **state)
{
    fixture *f = *state;
    qrl_store *a = f->st, *b = node(f);
    int64_t id = add_lr(a, 1, "WDJBMJHT", T0), t = T0 + 10000;
    int iv = 0;

    assert_int_equal(a->m->lr_poll(a, id, t, 0, 1000, 5, 60, &iv), QRL_OK);
    assert_int_equal(iv, 5);
    /* 3.9 s later: within 5 s - 1 s, too soon. */
    assert_int_equal(a->m->lr_poll(a, id, t + 3999, 0, 1000, 5, 60, &iv), QRL_ERR_SLOW_DOWN);
    assert_int_equal(iv, 10);
    /* The slow_down counts as a poll: 9 s after it is just in time for 10 s less 1. */
    t += 3999;
    assert_int_equal(b->m->lr_poll(b, id, t + 8999, 0, 1000, 5, 60, &iv), QRL_ERR_SLOW_DOWN);
    assert_int_equal(iv, 15);
    t += 8999;
    assert_int_equal(b->m->lr_poll(b, id, t + 14000, 0, 1000, 5, 60, &iv), QRL_OK);
    assert_int_equal(iv, 15);
    t += 14000;
    /* Another node answers the next poll, 1 s later: too soon for the history both share. */
    assert_int_equal(a->m->lr_poll(a, id, t + 1000, 0, 1000, 5, 60, &iv), QRL_ERR_SLOW_DOWN);
    assert_int_equal(iv, 20);
    t += 1000;
    /* Exempt (a client held for the interval): never slow_down, not recorded. */
    assert_int_equal(a->m->lr_poll(a, id, t + 10, 1, 1000, 5, 60, &iv), QRL_OK);
    assert_int_equal(iv, 20);
    assert_int_equal(a->m->lr_poll(a, id, t + 20, 0, 1000, 5, 60, &iv), QRL_ERR_SLOW_DOWN);
    assert_int_equal(iv, 25);
    t += 20;
    /* Up to the ceiling, never past it. */
    for (int i = 0; i < 10; i++) {
        t += 10;
        assert_int_equal(a->m->lr_poll(a, id, t, 0, 1000, 5, 60, &iv), QRL_ERR_SLOW_DOWN);
    }
    assert_int_equal(iv, 60);
    assert_int_equal(a->m->lr_poll(a, id, t + 59000, 0, 1000, 5, 60, NULL), QRL_OK);
    assert_int_equal(a->m->lr_poll(a, id + 999, t, 0, 1000, 5, 60, &iv), QRL_ERR_NOT_FOUND);
    /* The request's own interval_s is what it was made with. */
    {
        qrl_lr_rec got;
        assert_int_equal(a->m->lr_get(a, id, &got), QRL_OK);
        assert_int_equal(got.interval_s, 5);
    }
    b->m->close(b);
}

/* --- rate limits, sweep ------------------------------------------------------------------- */

static void test_ratelimit(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    const int64_t w = 60000;
    int64_t c = -1;
    char longkey[300];

    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.1", T0, w, &c), QRL_OK);
    assert_int_equal(c, 0);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0, w, &c), QRL_OK);
    assert_int_equal(c, 1);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0 + 10, w, &c), QRL_OK);
    assert_int_equal(c, 2);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0 + w - 1, w, &c), QRL_OK);
    assert_int_equal(c, 3);
    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.1", T0 + w - 1, w, &c), QRL_OK);
    assert_int_equal(c, 3);
    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.2", T0, w, &c), QRL_OK);
    assert_int_equal(c, 0);
    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.1", T0 + w, w, &c), QRL_OK);
    assert_int_equal(c, 0);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0 + w + 5, w, &c), QRL_OK);
    assert_int_equal(c, 1);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0 + 2 * w + 4, w, &c), QRL_OK);
    assert_int_equal(c, 2);
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(st->m->ratelimit_hit(st, longkey, T0, w, &c), QRL_ERR_INVALID);
    assert_int_equal(st->m->ratelimit_hit(st, "k", T0, 0, &c), QRL_ERR_INVALID);
}

/* GCRA: take allows `limit` at once, then one per window / limit; give returns one; a refusal
 * says how long until the next attempt is taken. */
static void test_ratelimit_take(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    const int64_t w = 60000;
    int64_t retry = 0;

    for (int i = 0; i < 3; i++)
        assert_int_equal(st->m->ratelimit_take(st, "g:k", T0, w, 3, &retry), QRL_OK);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0, w, 3, &retry), QRL_ERR_RATE_LIMITED);
    assert_int_equal(retry, 20000);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 5000, w, 3, &retry),
                     QRL_ERR_RATE_LIMITED);
    assert_int_equal(retry, 15000); /* refusals do not push it further */
    assert_int_equal(st->m->ratelimit_take(st, "g:other", T0, w, 3, NULL), QRL_OK);
    assert_int_equal(st->m->ratelimit_give(st, "g:k", T0 + 5000, w, 3), QRL_OK);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 5000, w, 3, NULL), QRL_OK);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 5000, w, 3, NULL), QRL_ERR_RATE_LIMITED);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 20000, w, 3, NULL), QRL_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(st->m->ratelimit_give(st, "g:k", T0 + 200000, w, 3), QRL_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 200000, w, 3, NULL), QRL_OK);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 200000, w, 3, NULL),
                     QRL_ERR_RATE_LIMITED);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0, 0, 3, NULL), QRL_ERR_INVALID);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0, w, 0, NULL), QRL_ERR_INVALID);
    assert_int_equal(st->m->ratelimit_give(st, "g:unknown", T0, w, 3), QRL_OK);
}

/* 16 threads on two nodes take from one limit of 5 at the same moment: exactly 5 pass. */
struct take_race {
    qrl_store *st[2];
    pthread_barrier_t barrier;
    qrl_err rc[NTHREADS];
};
struct take_racer {
    struct take_race *r;
    int i;
};

static void *take_racer_main(void *arg)
{
    struct take_racer *me = arg;
    qrl_store *st = me->r->st[me->i % 2];
    int64_t c;

    (void)st->m->ratelimit_peek(st, "warm", T0, 1000, &c);
    pthread_barrier_wait(&me->r->barrier);
    me->r->rc[me->i] = st->m->ratelimit_take(st, "g:race", T0, 60000, 5, NULL);
    return NULL;
}

static void test_ratelimit_take_two_nodes(void **state)
{
    fixture *f = *state;
    struct take_race r;
    struct take_racer who[NTHREADS];
    pthread_t th[NTHREADS];
    int ok = 0;

    memset(&r, 0, sizeof r);
    r.st[0] = f->st;
    r.st[1] = node(f);
    pthread_barrier_init(&r.barrier, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        who[i] = (struct take_racer){.r = &r, .i = i};
        assert_int_equal(pthread_create(&th[i], NULL, take_racer_main, &who[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r.barrier);
    for (int i = 0; i < NTHREADS; i++) {
        if (r.rc[i] == QRL_OK)
            ok++;
        else
            assert_int_equal(r.rc[i], QRL_ERR_RATE_LIMITED);
    }
    assert_int_equal(ok, 5);
    r.st[1]->m->close(r.st[1]);
}

static void test_sweep(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    const int64_t keep = 3600000;
    int64_t now = T0 + 10 * keep, c;
    qrl_lr_rec got;
    int64_t old_lr = add_lr(st, 1, "BBBBBBBB", now - keep - TTL - 1);
    int64_t edge_lr = add_lr(st, 2, "CCCCCCCC", now - keep - TTL);
    int64_t live_lr = add_lr(st, 3, "DDDDDDDD", now - 10);
    qrl_lr_rec clock_old = make_lr(4, "FFFFFFFF", now - keep - TTL - 1);
    qrl_lr_rec clock_edge = make_lr(5, "GGGGGGGG", now - keep - TTL);
    qrl_lr_rec clock_live = make_lr(6, "HHHHHHHH", now - 10);
    const unsigned any = QRL_LR_BIT(QRL_LR_PENDING);

    clock_old.id = (now - keep - TTL - 1) << 11 | 2047;
    clock_edge.id = (now - keep - TTL) << 11;
    clock_live.id = (now - 10) << 11 | 1;
    assert_int_equal(st->m->lr_create(st, &clock_old), QRL_OK);
    assert_int_equal(st->m->lr_create(st, &clock_edge), QRL_OK);
    assert_int_equal(st->m->lr_create(st, &clock_live), QRL_OK);
    assert_int_equal(move(st, edge_lr, any, QRL_LR_DENIED, now - keep - TTL + 1), QRL_OK);
    assert_int_equal(move(st, clock_edge.id, any, QRL_LR_DENIED, now - keep - TTL + 1), QRL_OK);
    int64_t idle_lr = add_lr(st, 7, "JJJJJJJJ", now - TTL - 60001);
    int64_t idle_live = add_lr(st, 8, "KKKKKKKK", now - TTL - 59999);
    assert_int_equal(st->m->ratelimit_hit(st, "old", now - keep - 1001, 1000, &c), QRL_OK);
    assert_int_equal(st->m->ratelimit_hit(st, "edge", now - keep - 1000, 1000, &c), QRL_OK);
    assert_int_equal(st->m->ratelimit_hit(st, "live", now - 10, 1000, &c), QRL_OK);

    /* Another node sweeping (it holds the sweep's lock): this one skips, deletes nothing. */
    {
        PGconn *other = admin(f->uri);
        PGresult *r = PQexec(other, "BEGIN; SELECT pg_advisory_xact_lock(1364348999, 2)");
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
        assert_int_equal(st->m->sweep(st, now, keep), QRL_OK);
        assert_int_equal(st->m->lr_get(st, old_lr, &got), QRL_OK);
        PQclear(PQexec(other, "ROLLBACK"));
        PQfinish(other);
    }

    assert_int_equal(st->m->sweep(st, now, keep), QRL_OK);
    assert_int_equal(st->m->lr_get(st, old_lr, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_get(st, edge_lr, &got), QRL_OK);
    assert_int_equal(st->m->lr_get(st, live_lr, &got), QRL_OK);
    assert_int_equal(st->m->lr_get(st, clock_old.id, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_get(st, clock_edge.id, &got), QRL_OK);
    assert_int_equal(st->m->lr_get(st, clock_live.id, &got), QRL_OK);
    assert_int_equal(st->m->lr_get(st, idle_lr, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_get(st, idle_live, &got), QRL_OK);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM rate_limits WHERE key = 'old'"), 0);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM rate_limits WHERE key = 'edge'"), 1);
    assert_int_equal(st->m->sweep(st, now, -1), QRL_ERR_INVALID);
}

/* --- passkeys ----------------------------------------------------------------------------- */

static qrl_passkey_rec make_passkey(int64_t account_id, unsigned char seed, size_t cred_len,
                                    int64_t created)
{
    qrl_passkey_rec pk;

    memset(&pk, 0, sizeof pk);
    pk.account_id = account_id;
    memset(pk.cred_id, seed, cred_len);
    pk.cred_id_len = cred_len;
    pk.alg = -7;
    pk.pubkey[0] = 0x04;
    memset(pk.pubkey + 1, seed ^ 0x5a, 64);
    pk.pubkey_len = 65;
    pk.sign_count = 7;
    snprintf(pk.name, sizeof pk.name, "Key %u", seed);
    pk.created_ms = created;
    return pk;
}

static void test_passkeys(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t alice = add_account(st, "alice", 0), bob = add_account(st, "bob", 0);
    qrl_passkey_rec a = make_passkey(alice, 1, 16, T0 + 2);
    qrl_passkey_rec b = make_passkey(alice, 2, QRL_MAX_CRED_ID, T0 + 1);
    qrl_passkey_rec c = make_passkey(bob, 3, 32, T0), dup = make_passkey(bob, 1, 16, T0);
    qrl_passkey_rec got, list[4], bad;
    size_t n = 99;

    a.last_used_ms = 12345;
    assert_int_equal(st->m->passkey_add(st, &a), QRL_OK);
    assert_true(a.id > 0);
    assert_int_equal(a.last_used_ms, 0);
    assert_int_equal(st->m->passkey_add(st, &b), QRL_OK);
    assert_int_equal(st->m->passkey_add(st, &c), QRL_OK);
    assert_int_equal(st->m->passkey_add(st, &dup), QRL_ERR_EXISTS);
    bad = make_passkey(alice, 2, 0, T0);
    assert_int_equal(st->m->passkey_add(st, &bad), QRL_ERR_INVALID);
    bad = make_passkey(alice + bob + 100, 9, 16, T0);
    assert_int_equal(st->m->passkey_add(st, &bad), QRL_ERR_NOT_FOUND);

    assert_int_equal(st->m->passkey_get(st, b.cred_id, b.cred_id_len, &got), QRL_OK);
    assert_int_equal(got.id, b.id);
    assert_int_equal(got.account_id, alice);
    assert_int_equal(got.cred_id_len, QRL_MAX_CRED_ID);
    assert_memory_equal(got.cred_id, b.cred_id, QRL_MAX_CRED_ID);
    assert_int_equal(got.alg, -7);
    assert_int_equal(got.pubkey_len, 65);
    assert_memory_equal(got.pubkey, b.pubkey, 65);
    assert_int_equal(got.sign_count, 7);
    assert_string_equal(got.name, "Key 2");
    assert_int_equal(got.created_ms, T0 + 1);
    assert_int_equal(st->m->passkey_get(st, b.cred_id, 16, &got), QRL_ERR_NOT_FOUND);

    assert_int_equal(st->m->passkey_list(st, alice, list, 4, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, b.id);
    assert_int_equal(list[1].id, a.id);
    assert_int_equal(st->m->passkey_list(st, bob + 100, list, 4, &n), QRL_OK);
    assert_int_equal(n, 0);

    /* The counter is a compare-and-set. */
    assert_int_equal(st->m->passkey_use(st, a.id, 6, 9, T0 + 5), QRL_ERR_CONFLICT);
    assert_int_equal(st->m->passkey_use(st, a.id, 7, 9, T0 + 5), QRL_OK);
    assert_int_equal(st->m->passkey_use(st, a.id, 7, 10, T0 + 6), QRL_ERR_CONFLICT);
    assert_int_equal(st->m->passkey_use(st, a.id + 100, 0, 1, T0 + 6), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->passkey_use(st, a.id, 9, UINT32_MAX, T0 + 7), QRL_OK);
    assert_int_equal(st->m->passkey_get(st, a.cred_id, a.cred_id_len, &got), QRL_OK);
    assert_true(got.sign_count == UINT32_MAX);
    assert_int_equal(got.last_used_ms, T0 + 7);

    assert_int_equal(st->m->passkey_delete(st, bob, a.id), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->passkey_delete(st, alice, a.id), QRL_OK);
    assert_int_equal(st->m->passkey_delete(st, alice, a.id), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->passkey_add(st, &a), QRL_OK);
}

/* --- WebAuthn challenges (store version 11) ------------------------------------------------- */

#define CHAL_TTL 120000LL
#define CHAL_MAX QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE

static qrl_challenge_rec make_chal(unsigned seed, int64_t device_id, int64_t expires)
{
    qrl_challenge_rec c;

    memset(&c, 0, sizeof c);
    c.hash = hash_of(seed);
    c.account_id = 1;
    c.device_id = device_id;
    c.purpose = 1;
    c.expires_ms = expires;
    return c;
}

static int64_t chal_count(const fixture *f, int64_t device_id)
{
    char sql[96];

    snprintf(sql, sizeof sql, "SELECT count(*) FROM webauthn_challenges WHERE device_id = %lld",
             (long long)device_id);
    return admin_int(f->uri, sql);
}

/* Put on one node, take on the other, once; what was put comes back; an expired one is never
 * taken; the sweep deletes the expired; refusals change nothing. */
static void test_challenges(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st, *b = node(f);
    qrl_challenge_rec a = make_chal(1, 7, T0 + CHAL_TTL), e = make_chal(2, 7, T0 + 1000);
    qrl_challenge_rec live = make_chal(3, 8, T0 + CHAL_TTL), got, bad;
    qrl_hash unknown = hash_of(99);

    assert_true(st->m->version >= 11);
    assert_non_null(st->m->challenge_put);
    assert_non_null(st->m->challenge_take);
    a.account_id = 3;
    a.lr_id = 42;
    a.purpose = 2;
    assert_int_equal(st->m->challenge_put(st, &a, T0), QRL_OK);
    assert_int_equal(b->m->challenge_put(b, &a, T0), QRL_ERR_EXISTS);
    memset(&got, 0xff, sizeof got);
    assert_int_equal(b->m->challenge_take(b, &a.hash, T0 + 1000, &got), QRL_OK);
    assert_memory_equal(got.hash.b, a.hash.b, QRL_HASH_BYTES);
    assert_int_equal(got.account_id, 3);
    assert_int_equal(got.device_id, 7);
    assert_int_equal(got.lr_id, 42);
    assert_int_equal(got.purpose, 2);
    assert_int_equal(got.expires_ms, T0 + CHAL_TTL);
    assert_int_equal(st->m->challenge_take(st, &a.hash, T0 + 1000, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(b->m->challenge_take(b, &a.hash, T0 + 1000, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->challenge_take(st, &unknown, T0 + 1000, NULL), QRL_ERR_NOT_FOUND);

    /* Expired: not taken, deleted all the same. */
    assert_int_equal(st->m->challenge_put(st, &e, T0), QRL_OK);
    assert_int_equal(b->m->challenge_take(b, &e.hash, T0 + 1000, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(chal_count(f, 7), 0);
    /* The sweep deletes the expired, keeps the live. */
    assert_int_equal(st->m->challenge_put(st, &e, T0), QRL_OK);
    assert_int_equal(st->m->challenge_put(st, &live, T0), QRL_OK);
    assert_int_equal(b->m->sweep(b, T0 + 999, 3600000), QRL_OK);
    assert_int_equal(chal_count(f, 7), 1);
    assert_int_equal(b->m->sweep(b, T0 + 1000, 3600000), QRL_OK);
    assert_int_equal(chal_count(f, 7), 0);
    assert_int_equal(b->m->challenge_take(b, &live.hash, T0 + 1000, NULL), QRL_OK);

    assert_int_equal(st->m->challenge_put(st, NULL, T0), QRL_ERR_INVALID);
    assert_int_equal(st->m->challenge_take(st, NULL, T0, &got), QRL_ERR_INVALID);
    bad = make_chal(4, 7, T0 + CHAL_TTL);
    bad.account_id = 0;
    assert_int_equal(st->m->challenge_put(st, &bad, T0), QRL_ERR_INVALID);
    bad = make_chal(4, 0, T0 + CHAL_TTL);
    assert_int_equal(st->m->challenge_put(st, &bad, T0), QRL_ERR_INVALID);
    bad = make_chal(4, 7, T0 + CHAL_TTL);
    bad.lr_id = -1;
    assert_int_equal(st->m->challenge_put(st, &bad, T0), QRL_ERR_INVALID);
    bad = make_chal(4, 7, T0 + CHAL_TTL);
    bad.purpose = 0;
    assert_int_equal(st->m->challenge_put(st, &bad, T0), QRL_ERR_INVALID);
    bad = make_chal(4, 7, T0);
    assert_int_equal(st->m->challenge_put(st, &bad, T0), QRL_ERR_INVALID);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM webauthn_challenges"), 0);
    b->m->close(b);
}

/* However often one phone asks, it holds at most CHAL_MAX challenges: its newest; another
 * phone's are left alone; its expired ones make room first. */
static void test_challenge_per_device_bound(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_challenge_rec other = make_chal(1, 8, T0 + CHAL_TTL), got;

    assert_int_equal(st->m->challenge_put(st, &other, T0), QRL_OK);
    for (unsigned i = 0; i < CHAL_MAX + 3; i++) {
        qrl_challenge_rec c = make_chal(10 + i, 7, T0 + CHAL_TTL + i);
        assert_int_equal(st->m->challenge_put(st, &c, T0 + i), QRL_OK);
    }
    assert_int_equal(chal_count(f, 7), CHAL_MAX);
    for (unsigned i = 0; i < CHAL_MAX + 3; i++) {
        qrl_challenge_rec c = make_chal(10 + i, 7, 0);
        assert_int_equal(st->m->challenge_take(st, &c.hash, T0 + 100, &got),
                         i < 3 ? QRL_ERR_NOT_FOUND : QRL_OK);
    }
    assert_int_equal(st->m->challenge_take(st, &other.hash, T0 + 100, &got), QRL_OK);

    for (unsigned i = 0; i < CHAL_MAX; i++) {
        qrl_challenge_rec c = make_chal(30 + i, 9, T0 + 1000 + i);
        assert_int_equal(st->m->challenge_put(st, &c, T0), QRL_OK);
    }
    qrl_challenge_rec late = make_chal(50, 9, T0 + 1002 + CHAL_TTL);
    assert_int_equal(st->m->challenge_put(st, &late, T0 + 1002), QRL_OK);
    assert_int_equal(chal_count(f, 9), CHAL_MAX - 3 + 1);
    qrl_challenge_rec kept = make_chal(33, 9, 0);
    assert_int_equal(st->m->challenge_take(st, &kept.hash, T0 + 1002, &got), QRL_OK);
}

struct chal_race {
    qrl_store *st[2];
    qrl_hash h;
    pthread_barrier_t barrier;
    qrl_err rc[NTHREADS];
};

struct chal_racer {
    struct chal_race *r;
    int i;
};

static void *chal_take_racer(void *arg)
{
    struct chal_racer *me = arg;
    qrl_store *st = me->r->st[me->i % 2];
    qrl_challenge_rec got;
    qrl_hash warm = hash_of(77);

    /* Connect first, so that the race is on the statement itself. */
    (void)st->m->challenge_take(st, &warm, T0, NULL);
    pthread_barrier_wait(&me->r->barrier);
    me->r->rc[me->i] = st->m->challenge_take(st, &me->r->h, T0 + 1000, &got);
    if (me->r->rc[me->i] == QRL_OK && got.device_id != 7)
        me->r->rc[me->i] = QRL_ERR_STORE;
    return NULL;
}

static void *chal_put_racer(void *arg)
{
    struct chal_racer *me = arg;
    qrl_store *st = me->r->st[me->i % 2];
    qrl_challenge_rec c = make_chal(200 + (unsigned)me->i, 11, T0 + CHAL_TTL);
    qrl_hash warm = hash_of(77);

    (void)st->m->challenge_take(st, &warm, T0, NULL);
    pthread_barrier_wait(&me->r->barrier);
    me->r->rc[me->i] = st->m->challenge_put(st, &c, T0);
    return NULL;
}

static void run_chal_race(struct chal_race *r, void *(*fn)(void *))
{
    pthread_t th[NTHREADS];
    struct chal_racer who[NTHREADS];

    assert_int_equal(pthread_barrier_init(&r->barrier, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) {
        who[i] = (struct chal_racer){.r = r, .i = i};
        assert_int_equal(pthread_create(&th[i], NULL, fn, &who[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r->barrier);
}

/* 16 threads on two nodes take one challenge at once: exactly one gets it. 16 threads on two
 * nodes put for one phone at once: it holds CHAL_MAX afterwards, not more. */
static void test_challenge_races_two_nodes(void **state)
{
    fixture *f = *state;
    qrl_store *second = node(f);
    struct chal_race r;

    for (unsigned round = 0; round < 4; round++) {
        qrl_challenge_rec c = make_chal(100 + round, 7, T0 + CHAL_TTL);
        int wins = 0;

        memset(&r, 0, sizeof r);
        r.st[0] = f->st;
        r.st[1] = second;
        r.h = c.hash;
        assert_int_equal(f->st->m->challenge_put(f->st, &c, T0), QRL_OK);
        run_chal_race(&r, chal_take_racer);
        for (int i = 0; i < NTHREADS; i++) {
            if (r.rc[i] == QRL_OK)
                wins++;
            else
                assert_int_equal(r.rc[i], QRL_ERR_NOT_FOUND);
        }
        assert_int_equal(wins, 1);
    }
    memset(&r, 0, sizeof r);
    r.st[0] = f->st;
    r.st[1] = second;
    run_chal_race(&r, chal_put_racer);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(r.rc[i], QRL_OK);
    assert_int_equal(chal_count(f, 11), CHAL_MAX);
    second->m->close(second);
}

/* --- notices of new devices (store version 10) -------------------------------------------- */

static qrl_notice_rec make_notice(int64_t id, int64_t account_id, int64_t device_id,
                                  int64_t created)
{
    qrl_notice_rec n;

    memset(&n, 0, sizeof n);
    n.id = id;
    n.account_id = account_id;
    n.device_id = device_id;
    n.created_ms = created;
    snprintf(n.platform, sizeof n.platform, "Chrome on Linux");
    return n;
}

static void test_notices(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t alice = add_account(st, "alice", 0), bob = add_account(st, "bob", 0);
    int64_t phone = add_device(st, alice, "Phone", T0), other = add_device(st, alice, "Tablet", T0);
    int64_t tv = add_device(st, alice, "TV", T0 + 5);
    qrl_notice_rec n = make_notice(100, alice, tv, T0 + 5), got, list[4];
    size_t k = 99;

    assert_non_null(st->m->notice_add);
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_OK);
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_ERR_EXISTS);
    n.id = 0;
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_ERR_INVALID);
    n = make_notice(101, alice, tv, T0 + 5);
    memset(n.platform, 'p', sizeof n.platform);
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_ERR_INVALID);
    n = make_notice(101, alice, tv + 1000, T0 + 5); /* no such device */
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_ERR_NOT_FOUND);

    /* Listed for the account's other devices, not for the new device itself. */
    assert_int_equal(st->m->notice_list(st, alice, phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(list[0].id, 100);
    assert_int_equal(list[0].device_id, tv);
    assert_int_equal(list[0].created_ms, T0 + 5);
    assert_string_equal(list[0].platform, "Chrome on Linux");
    assert_int_equal(list[0].device.id, tv);
    assert_string_equal(list[0].device.name, "TV");
    assert_int_equal(st->m->notice_list(st, alice, tv, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 0);
    assert_int_equal(st->m->notice_list(st, alice, phone, T0 + 6, list, 4, &k), QRL_OK);
    assert_int_equal(k, 0);
    assert_int_equal(st->m->notice_get(st, alice, 100, &got), QRL_OK);
    assert_string_equal(got.device.name, "TV");
    assert_int_equal(st->m->notice_get(st, bob, 100, &got), QRL_ERR_NOT_FOUND);

    /* Acknowledged by one device: gone from its list only; twice changes nothing. */
    assert_int_equal(st->m->notice_ack(st, alice, 100, phone, T0 + 10), QRL_OK);
    assert_int_equal(st->m->notice_ack(st, alice, 100, phone, T0 + 11), QRL_OK);
    assert_int_equal(st->m->notice_list(st, alice, phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 0);
    assert_int_equal(st->m->notice_list(st, alice, other, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(st->m->notice_ack(st, bob, 100, phone, T0 + 12), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->notice_ack(st, alice, 999, phone, T0 + 12), QRL_ERR_NOT_FOUND);

    /* Newest first; a newer notice prunes the account's older ones with their acks. */
    n = make_notice(200, alice, tv, T0 + 20000);
    assert_int_equal(st->m->notice_add(st, &n, T0 + 10), QRL_OK);
    assert_int_equal(st->m->notice_get(st, alice, 100, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM notice_acks"), 0);
    n = make_notice(300, alice, other, T0 + 20001);
    assert_int_equal(st->m->notice_add(st, &n, T0 + 10), QRL_OK);
    assert_int_equal(st->m->notice_list(st, alice, phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 2);
    assert_int_equal(list[0].id, 300);
    assert_int_equal(list[1].id, 200);
    /* A revoked device's notice drops out of every list. */
    assert_int_equal(st->m->device_revoke(st, alice, tv, T0 + 30000), QRL_OK);
    assert_int_equal(st->m->notice_list(st, alice, phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(list[0].id, 300);
    assert_int_equal(st->m->notice_get(st, alice, 200, &got), QRL_OK);
    assert_int_equal(got.device.revoked_ms, T0 + 30000);
}

/* --- notices of blocked requests (store version 11) ----------------------------------------- */

/* A notice that phone `device` of `account` was stopped from approving a phishing request. */
static qrl_notice_rec make_blocked(int64_t id, int64_t account_id, int64_t device_id,
                                   int64_t created)
{
    qrl_notice_rec n = make_notice(id, account_id, device_id, created);

    n.kind = QRL_NOTICE_REQUEST_BLOCKED;
    snprintf(n.platform, sizeof n.platform, "Samsung Tizen");
    snprintf(n.reason, sizeof n.reason, "many_accounts");
    snprintf(n.screen_name, sizeof n.screen_name, "Living Room TV");
    snprintf(n.screen_kind, sizeof n.screen_kind, "tv");
    snprintf(n.screen_address, sizeof n.screen_address, "2001:db8::7");
    return n;
}

/* As the SQLite store: a blocked request's notice keeps every field, is listed to every device
 * of the account (the stopped phone too) and to no other account, is acknowledged per device,
 * stays listed after the phone is revoked, and its insertion wakes the account's waiters on
 * another node. */
static void test_notices_blocked(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st, *b = node(f);
    int64_t alice = add_account(st, "alice", 0), bob = add_account(st, "bob", 0);
    int64_t phone = add_device(st, alice, "Phone", T0), tablet = add_device(st, alice, "Tablet", T0);
    int64_t bob_phone = add_device(st, bob, "Bob's phone", T0);
    int64_t tv = add_device(st, alice, "TV", T0 + 1);
    qrl_notice_rec n = make_blocked(700, alice, phone, T0 + 5), list[4], got;
    struct seen seen = {.mu = PTHREAD_MUTEX_INITIALIZER};
    size_t k = 99;

    /* Listening once the first "look at everything" came. */
    assert_int_equal(b->m->set_notify(b, on_notify, &seen), QRL_OK);
    assert_true(wait_seen(&seen, 0, 0, 5000) >= 0);
    assert_true(st->m->version >= 11);
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_OK);
    assert_true(wait_seen(&seen, qrl_notice_key(alice), 0, 5000) >= 0);
    /* A kind that is none, and strings too long for their fields, are refused. */
    n = make_blocked(701, alice, phone, T0 + 5);
    n.kind = (qrl_notice_kind)9;
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_ERR_INVALID);
    n = make_blocked(701, alice, phone, T0 + 5);
    memset(n.reason, 'r', sizeof n.reason);
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_ERR_INVALID);
    n = make_blocked(701, alice, phone, T0 + 5);
    memset(n.screen_address, 'a', sizeof n.screen_address);
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_ERR_INVALID);
    /* Kind 0 is a new device's notice. */
    n = make_notice(650, alice, tv, T0 + 2);
    n.kind = (qrl_notice_kind)0;
    assert_int_equal(st->m->notice_add(st, &n, T0 - 1000), QRL_OK);

    assert_int_equal(st->m->notice_list(st, alice, phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 2);
    assert_int_equal(list[0].id, 700);
    assert_int_equal(list[0].kind, QRL_NOTICE_REQUEST_BLOCKED);
    assert_int_equal(list[0].device_id, phone);
    assert_int_equal(list[0].device.id, phone);
    assert_string_equal(list[0].platform, "Samsung Tizen");
    assert_string_equal(list[0].reason, "many_accounts");
    assert_string_equal(list[0].screen_name, "Living Room TV");
    assert_string_equal(list[0].screen_kind, "tv");
    assert_string_equal(list[0].screen_address, "2001:db8::7");
    assert_int_equal(list[1].id, 650);
    assert_int_equal(list[1].kind, QRL_NOTICE_DEVICE_LINKED);
    assert_string_equal(list[1].reason, "");
    assert_int_equal(b->m->notice_list(b, alice, tablet, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 2);
    assert_int_equal(st->m->notice_list(st, alice, tv, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(list[0].id, 700);
    assert_int_equal(st->m->notice_list(st, bob, bob_phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 0);
    assert_int_equal(st->m->notice_get(st, alice, 700, &got), QRL_OK);
    assert_int_equal(got.kind, QRL_NOTICE_REQUEST_BLOCKED);
    assert_int_equal(st->m->notice_get(st, bob, 700, &got), QRL_ERR_NOT_FOUND);

    /* Acknowledged by the phone: gone for it only. Then the phone is revoked: still told. */
    assert_int_equal(st->m->notice_ack(st, alice, 700, phone, T0 + 10), QRL_OK);
    assert_int_equal(st->m->notice_list(st, alice, phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(list[0].id, 650);
    assert_int_equal(st->m->device_revoke(st, alice, phone, T0 + 20), QRL_OK);
    assert_int_equal(st->m->device_revoke(st, alice, tv, T0 + 21), QRL_OK);
    assert_int_equal(st->m->notice_list(st, alice, tablet, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(list[0].id, 700);
    assert_int_equal(list[0].device.revoked_ms, T0 + 20);
    assert_int_equal(b->m->set_notify(b, NULL, NULL), QRL_OK);
    b->m->close(b);
}

/* A version-1 database (notices of new devices only) gains the columns: its notice reads back
 * as a new device's with empty request fields and its acknowledgement is kept. */
static void test_migrate_notices_from_v1(void **state)
{
    fixture *f = *state;
    int64_t alice = add_account(f->st, "alice", 0);
    int64_t phone = add_device(f->st, alice, "Phone", T0), phone2 = add_device(f->st, alice, "P2", T0);
    int64_t tv = add_device(f->st, alice, "TV", T0 + 1);
    qrl_notice_rec n = make_notice(500, alice, tv, T0 + 1), list[4];
    size_t k = 99;

    assert_int_equal(f->st->m->notice_add(f->st, &n, 0), QRL_OK);
    assert_int_equal(f->st->m->notice_ack(f->st, alice, 500, phone, T0 + 2), QRL_OK);
    f->st->m->close(f->st);
    f->st = NULL;
    /* Everything version 2 added, undone. */
    admin_exec(f->uri, "DROP TABLE webauthn_challenges; DROP FUNCTION IF EXISTS qrlogin_redeem;"
                       " ALTER TABLE login_requests DROP COLUMN dpop_jkt;"
                       " ALTER TABLE notices DROP COLUMN kind, DROP COLUMN reason,"
                       " DROP COLUMN screen_name, DROP COLUMN screen_kind,"
                       " DROP COLUMN screen_address;"
                       " UPDATE qrlogin_schema SET version = 1");
    f->st = node(f);
    assert_int_equal(admin_int(f->uri, "SELECT version FROM qrlogin_schema"), 2);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM notice_acks"), 1);
    assert_int_equal(f->st->m->notice_list(f->st, alice, phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 0);
    assert_int_equal(f->st->m->notice_list(f->st, alice, phone2, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(list[0].id, 500);
    assert_int_equal(list[0].kind, QRL_NOTICE_DEVICE_LINKED);
    assert_string_equal(list[0].platform, "Chrome on Linux");
    assert_string_equal(list[0].reason, "");
    assert_string_equal(list[0].screen_name, "");
    n = make_blocked(600, alice, phone, T0 + 3);
    assert_int_equal(f->st->m->notice_add(f->st, &n, 0), QRL_OK);
    assert_int_equal(f->st->m->notice_list(f->st, alice, phone, T0, list, 4, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(list[0].kind, QRL_NOTICE_REQUEST_BLOCKED);
}

/* A screen's DPoP key is stored by device_create and by redemption. */
static void test_device_key_at_create(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0), phone = add_device(st, acct, "Phone", T0);
    int64_t id = add_approved_lr(st, 1, "WDJBMJHT", acct, phone);
    qrl_device_rec d = make_device(acct, "TV", T0), got;

    d.has_pubkey = 1;
    memset(d.pubkey, 0x42, sizeof d.pubkey);
    assert_int_equal(st->m->device_create(st, &d, NULL, 0), QRL_OK);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_true(got.has_pubkey);
    assert_memory_equal(got.pubkey, d.pubkey, sizeof d.pubkey);
    d = make_device(0, "TV 2", T0 + 3000);
    d.has_pubkey = 1;
    memset(d.pubkey, 0x43, sizeof d.pubkey);
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, NULL, 0, NULL), QRL_OK);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_true(got.has_pubkey);
    assert_memory_equal(got.pubkey, d.pubkey, sizeof d.pubkey);
    assert_int_equal(st->m->device_get(st, phone, &got), QRL_OK);
    assert_false(got.has_pubkey);
}

/* --- races: one handle, and two nodes ----------------------------------------------------- */

struct race {
    qrl_store *st[2]; /* racers alternate between them; both the same for one node */
    pthread_barrier_t barrier;
    int64_t lr_id, phone, acct;
    qrl_hash refresh;
    qrl_err rc[NTHREADS];
    qrl_lr_state state[NTHREADS];
    int64_t dev_id[NTHREADS];
};
struct racer {
    struct race *r;
    int i;
};

static void *approve_racer(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    qrl_store *st = r->st[me->i % 2];
    qrl_lr_rec warm;
    qrl_lr_cas cas = approve_cas(r->lr_id, r->acct, r->phone);

    (void)st->m->lr_get(st, r->lr_id, &warm); /* the race is on the write, not the connect */
    pthread_barrier_wait(&r->barrier);
    r->rc[me->i] = st->m->lr_transition(st, &cas);
    return NULL;
}

static void *redeem_racer(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    qrl_store *st = r->st[me->i % 2];
    qrl_lr_rec warm;
    qrl_device_rec d = make_device(0, "TV", T0 + 3000);
    qrl_token_rec tok[2] = {
        make_token(100 + 2 * (unsigned)me->i, QRL_TOKEN_ACCESS, T0 + 3000, T0 + 3603000),
        make_token(101 + 2 * (unsigned)me->i, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000)};

    (void)st->m->lr_get(st, r->lr_id, &warm);
    pthread_barrier_wait(&r->barrier);
    r->rc[me->i] = st->m->lr_redeem(st, r->lr_id, T0 + 3000, &d, tok, 2, &r->state[me->i]);
    r->dev_id[me->i] = d.id;
    return NULL;
}

static void *rotate_racer(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    qrl_store *st = r->st[me->i % 2];
    qrl_lr_rec warm;
    qrl_token_rec fresh[1] = {
        make_token(300 + (unsigned)me->i, QRL_TOKEN_REFRESH, T0 + 100, T0 + 86400000)};

    (void)st->m->lr_get(st, 1, &warm);
    pthread_barrier_wait(&r->barrier);
    r->rc[me->i] = st->m->token_rotate(st, &r->refresh, T0 + 100, fresh, 1, NULL);
    return NULL;
}

static void run_race(struct race *r, void *(*fn)(void *))
{
    pthread_t th[NTHREADS];
    struct racer who[NTHREADS];

    assert_int_equal(pthread_barrier_init(&r->barrier, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) {
        who[i] = (struct racer){.r = r, .i = i};
        assert_int_equal(pthread_create(&th[i], NULL, fn, &who[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r->barrier);
}

static void race_transition(fixture *f, qrl_store *second)
{
    struct race r;
    qrl_lr_cas scan;
    qrl_lr_rec got;
    int wins = 0;

    memset(&r, 0, sizeof r);
    r.st[0] = f->st;
    r.st[1] = second;
    r.acct = add_account(f->st, "alice", 0);
    r.phone = add_device(f->st, r.acct, "Pixel", T0);
    r.lr_id = add_lr(f->st, 1, "WDJBMJHT", T0);
    scan = scan_cas(r.lr_id, r.phone);
    assert_int_equal(f->st->m->lr_transition(f->st, &scan), QRL_OK);
    run_race(&r, approve_racer);
    for (int i = 0; i < NTHREADS; i++) {
        if (r.rc[i] == QRL_OK)
            wins++;
        else
            assert_int_equal(r.rc[i], QRL_ERR_CONFLICT);
    }
    assert_int_equal(wins, 1);
    assert_int_equal(f->st->m->lr_get(f->st, r.lr_id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
}

static void race_redeem(fixture *f, qrl_store *second)
{
    struct race r;
    qrl_lr_rec got;
    qrl_device_rec list[NTHREADS + 2];
    size_t n;
    int wins = 0, winner = -1;

    memset(&r, 0, sizeof r);
    r.st[0] = f->st;
    r.st[1] = second;
    r.acct = add_account(f->st, "redeemer", 0);
    r.phone = add_device(f->st, r.acct, "Pixel", T0);
    r.lr_id = add_approved_lr(f->st, 2, "BCDFGHJK", r.acct, r.phone);
    run_race(&r, redeem_racer);
    for (int i = 0; i < NTHREADS; i++) {
        if (r.rc[i] == QRL_OK) {
            wins++;
            winner = i;
        } else {
            assert_int_equal(r.rc[i], QRL_ERR_CONFLICT);
            assert_int_equal(r.state[i], QRL_LR_REDEEMED);
        }
    }
    assert_int_equal(wins, 1);
    assert_int_equal(f->st->m->device_list(f->st, r.acct, list, NTHREADS + 2, &n), QRL_OK);
    assert_int_equal(n, 2); /* the phone and exactly one TV */
    assert_int_equal(list[1].id, r.dev_id[winner]);
    assert_int_equal(f->st->m->lr_get(f->st, r.lr_id, &got), QRL_OK);
    assert_int_equal(got.redeemed_device_id, r.dev_id[winner]);
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM tokens"), 2);
}

static void test_race_one_node(void **state)
{
    fixture *f = *state;

    race_transition(f, f->st);
    race_redeem(f, f->st);
}

static void test_race_two_nodes(void **state)
{
    fixture *f = *state;
    qrl_store *second = node(f);

    race_transition(f, second);
    race_redeem(f, second);
    second->m->close(second);
}

/* One refresh token rotated by 16 threads on two nodes: one rotation, and the rest a reuse
 * that ends the device (or, after that, a revoked token). */
static void test_race_rotate_two_nodes(void **state)
{
    fixture *f = *state;
    struct race r;
    int64_t acct = add_account(f->st, "alice", 0);
    qrl_device_rec d = make_device(acct, "TV", T0), got;
    qrl_token_rec rt = make_token(1, QRL_TOKEN_REFRESH, T0, T0 + 86400000);
    int ok = 0, reused = 0;

    assert_int_equal(f->st->m->device_create(f->st, &d, &rt, 1), QRL_OK);
    memset(&r, 0, sizeof r);
    r.st[0] = f->st;
    r.st[1] = node(f);
    r.refresh = rt.hash;
    run_race(&r, rotate_racer);
    for (int i = 0; i < NTHREADS; i++) {
        if (r.rc[i] == QRL_OK)
            ok++;
        else if (r.rc[i] == QRL_ERR_TOKEN_REUSED)
            reused++;
        else
            assert_int_equal(r.rc[i], QRL_ERR_REVOKED);
    }
    assert_int_equal(ok, 1);
    assert_true(reused >= 1);
    assert_int_equal(f->st->m->device_get(f->st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 100);
    /* One new token came of it. */
    assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM tokens"), 2);
    r.st[1]->m->close(r.st[1]);
}

/* --- other nodes' changes (set_notify) ---------------------------------------------------- */

/* A transition and a device revocation made through ANOTHER node reach this node's hook,
 * within a short time; set_notify(NULL) stops the calls. */
static void test_notify_other_node(void **state)
{
    fixture *f = *state;
    qrl_store *a = f->st, *b = node(f);
    struct seen s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int64_t acct = add_account(a, "alice", 0), phone = add_device(a, acct, "Pixel", T0);
    int64_t id = add_lr(a, 1, "WDJBMJHT", T0), took;
    qrl_lr_cas scan = scan_cas(id, phone);

    assert_int_equal(a->m->set_notify(NULL, on_notify, &s), QRL_ERR_INVALID);
    assert_int_equal(a->m->set_notify(a, on_notify, &s), QRL_OK);
    /* Listening: the first LISTEN is followed by a "look at everything". */
    assert_true(wait_seen(&s, 0, 0, 5000) >= 0);

    assert_int_equal(b->m->lr_transition(b, &scan), QRL_OK);
    took = wait_seen(&s, id, 0, 5000);
    assert_true(took >= 0);
    assert_true(took < 2000);
    assert_int_equal(b->m->device_revoke(b, acct, phone, T0 + 5), QRL_OK);
    took = wait_seen(&s, -phone, 0, 5000);
    assert_true(took >= 0);
    assert_true(took < 2000);
    /* A notice of a new device another node records wakes the account's waiters here. */
    {
        int64_t tv = add_device(b, acct, "TV", T0 + 6);
        qrl_notice_rec n = make_notice(500, acct, tv, T0 + 6);
        assert_int_equal(b->m->notice_add(b, &n, T0 - 1000), QRL_OK);
        assert_true(wait_seen(&s, qrl_notice_key(acct), 0, 5000) >= 0);
    }
    /* A compare-and-set that changed nothing notifies nobody; a revoked device is not
     * revoked again. */
    assert_int_equal(b->m->lr_transition(b, &scan), QRL_ERR_CONFLICT);
    /* The hook removed: no call after set_notify returns. */
    assert_int_equal(a->m->set_notify(a, NULL, NULL), QRL_OK);
    pthread_mutex_lock(&s.mu);
    int before = s.n;
    pthread_mutex_unlock(&s.mu);
    assert_int_equal(move(b, id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_DENIED, T0 + 6), QRL_OK);
    usleep(300000);
    pthread_mutex_lock(&s.mu);
    assert_int_equal(s.n, before);
    pthread_mutex_unlock(&s.mu);
    b->m->close(b);
}

/* The listening connection killed from a third connection: the listener connects again,
 * LISTENs again and calls the hook with 0 (every held request looks again), and later changes
 * are heard as before. */
static void test_notify_after_listener_killed(void **state)
{
    fixture *f = *state;
    qrl_store *a = f->st, *b = node(f);
    struct seen s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int64_t id = add_lr(a, 1, "WDJBMJHT", T0);
    int zeros;

    assert_int_equal(a->m->set_notify(a, on_notify, &s), QRL_OK);
    assert_true(wait_seen(&s, 0, 0, 5000) >= 0);
    zeros = seen_zeros(&s);
    assert_int_equal(admin_int(f->uri, "SELECT count(pg_terminate_backend(pid, 5000))"
                                       " FROM pg_stat_activity WHERE datname = current_database()"
                                       " AND query = 'LISTEN qrlogin'"),
                     1);
    assert_true(wait_seen(&s, 0, zeros, 5000) >= 0);
    assert_int_equal(move(b, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 1), QRL_OK);
    assert_true(wait_seen(&s, id, 0, 5000) >= 0);
    assert_int_equal(a->m->set_notify(a, NULL, NULL), QRL_OK);
    b->m->close(b);
}

/* The core installs its hook: another node's change reaches qrl_config.on_change, and the
 * RFC 8628 bookkeeping of two cores on two nodes is one (a poll answered by one node, then one
 * right after by the other, is slow_down). */
static struct seen core_seen = {.mu = PTHREAD_MUTEX_INITIALIZER};
static void core_on_change(void *ud, int64_t id)
{
    (void)ud;
    on_notify(&core_seen, id);
}

static void test_core_two_nodes(void **state)
{
    fixture *f = *state;
    qrl_store *b = node(f);
    qrl_config cfg;
    qrl_core *ca = NULL, *cb = NULL;
    qrl_device_auth da;
    qrl_poll_result res;

    qrl_config_defaults(&cfg);
    cfg.on_change = core_on_change;
    assert_int_equal(qrl_core_new(&cfg, f->st, &ca), QRL_OK);
    qrl_config_defaults(&cfg);
    assert_int_equal(qrl_core_new(&cfg, b, &cb), QRL_OK);
    assert_true(wait_seen(&core_seen, 0, 0, 5000) >= 0);

    assert_int_equal(qrl_device_authorize(ca, "tv-app", "openid", "TV", "tv", "192.0.2.1", &da),
                     QRL_OK);
    assert_int_equal(qrl_token_device_code(ca, "tv-app", da.device_code, 0, 0, "192.0.2.1", &res),
                     QRL_ERR_PENDING);
    assert_int_equal(qrl_token_device_code(cb, "tv-app", da.device_code, 0, 0, "192.0.2.1", &res),
                     QRL_ERR_SLOW_DOWN);
    /* Another node denies it: this core hears of it. */
    assert_int_equal(
        move(b, da.lr_id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, qrl_core_now_ms(cb)), QRL_OK);
    assert_true(wait_seen(&core_seen, da.lr_id, 0, 5000) >= 0);
    qrl_core_free(ca);
    qrl_core_free(cb);
    b->m->close(b);
}

/* --- the database going away -------------------------------------------------------------- */

/* The pool's connections killed under it: the next methods reconnect and work. */
static void test_reconnect_after_kill(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_account_rec a;
    int64_t id = add_account(st, "alice", 0);

    assert_true(admin_int(f->uri, "SELECT count(pg_terminate_backend(pid, 5000))"
                                  " FROM pg_stat_activity WHERE datname = current_database()"
                                  " AND pid <> pg_backend_pid()") >= 1);
    assert_int_equal(st->m->account_get(st, id, &a), QRL_OK);
    add_account(st, "bob", 0);
}

/* While the database is down a method fails with QRL_ERR_BUSY, having written nothing; the
 * first method after it is back works, and the listener hears changes again. */
static void test_database_restart(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    struct seen s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    qrl_account_rec acc;
    qrl_store_health h;
    int64_t id = add_lr(st, 1, "WDJBMJHT", T0);
    int zeros;

    assert_int_equal(st->m->set_notify(st, on_notify, &s), QRL_OK);
    assert_true(wait_seen(&s, 0, 0, 5000) >= 0);
    zeros = seen_zeros(&s);
    assert_int_equal(st->m->health(st, 1, &h), QRL_OK);

    assert_int_equal(cluster("down", NULL, 0), 0);
    memset(&acc, 0, sizeof acc);
    snprintf(acc.username, sizeof acc.username, "during");
    snprintf(acc.display_name, sizeof acc.display_name, "During");
    snprintf(acc.pw_hash, sizeof acc.pw_hash, "x");
    assert_int_equal(st->m->account_create(st, &acc), QRL_ERR_BUSY);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1),
                     QRL_ERR_BUSY);
    assert_int_equal(st->m->health(st, 1, NULL), QRL_ERR_STORE);
    assert_int_equal(cluster("up", NULL, 0), 0);

    /* The next method works. */
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1), QRL_OK);
    assert_int_equal(st->m->account_by_name(st, "during", &acc), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->health(st, 1, NULL), QRL_OK);
    /* The listener is back (and said so with a 0), and hears another node's change. */
    assert_true(wait_seen(&s, 0, zeros, 15000) >= 0);
    {
        qrl_store *b = node(f);
        assert_int_equal(move(b, id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_DENIED, T0 + 2), QRL_OK);
        assert_true(wait_seen(&s, id, 0, 5000) >= 0);
        b->m->close(b);
    }
    assert_int_equal(st->m->set_notify(st, NULL, NULL), QRL_OK);
}

/* health: the write statistics count, and the probe says BUSY while another session holds a
 * lock every write would wait for, within about a tenth of a second. */
static void test_health(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_store_health h;
    uint64_t total = 0;
    int64_t t0;
    PGconn *other;
    PGresult *r;

    add_account(st, "alice", 0);
    add_lr(st, 1, "WDJBMJHT", T0);
    assert_int_equal(st->m->health(st, 0, &h), QRL_OK);
    assert_true(h.commit_us.n > 0);
    for (size_t i = 0; i <= h.commit_us.n; i++)
        total += h.commit_us.count[i];
    assert_true(total >= 2);
    assert_int_equal(h.sync_us.n, 0);
    assert_int_equal(h.batch_writes.n, 0);
    assert_int_equal(st->m->health(st, 1, NULL), QRL_OK);

    other = admin(f->uri);
    r = PQexec(other, "BEGIN; LOCK TABLE login_requests IN ACCESS EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    t0 = ms_now();
    assert_int_equal(st->m->health(st, 1, NULL), QRL_ERR_BUSY);
    assert_true(ms_now() - t0 < 1000);
    PQclear(PQexec(other, "ROLLBACK"));
    PQfinish(other);
    assert_int_equal(st->m->health(st, 1, NULL), QRL_OK);
    assert_int_equal(st->m->health(NULL, 0, NULL), QRL_ERR_INVALID);
}

/* --- main --------------------------------------------------------------------------------- */

/* --- one statement where there were several (store version 11), notifications after commit - */

/* The payloads of the notifier (lib/store/postgres/notify.c), internal to the store. */
size_t qrl__pg_payloads(const int64_t *ids, size_t n, char *out, size_t cap);

static qrl_lr_poll_req poll_of(int64_t id, unsigned seed, int64_t now, int wait_s)
{
    return (qrl_lr_poll_req){.key = {.id = id, .hash = hash_of(seed * 2 + 1000)},
                             .client_id = "tv-app",
                             .now_ms = now,
                             .wait_s = wait_s,
                             .slack_ms = 1000,
                             .step_s = 5,
                             .max_s = 60};
}

/* lr_poll_find: the read and lr_poll's RFC 8628 bookkeeping in one step, shared by two nodes,
 * for the request's own polls only: a wrong hash, client or DPoP key is QRL_ERR_NOT_FOUND and
 * counts nothing. */
static void test_lr_poll_find(void **state)
{
    fixture *f = *state;
    qrl_store *a = f->st, *b = node(f);
    int64_t id = add_lr(a, 1, "WDJBMJHT", T0), t = T0 + 10000;
    qrl_lr_poll_req p = poll_of(id, 1, t, -1);
    qrl_lr_rec got, keyed = make_lr(3, "BCDFGHJK", T0);
    char other[QRL_DPOP_JKT_LEN + 1];
    int iv = 0;

    assert_non_null(a->m->lr_poll_find);
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, &iv), QRL_OK);
    assert_int_equal(got.id, id);
    assert_int_equal(got.state, QRL_LR_PENDING);
    assert_string_equal(got.user_code, "WDJBMJHT");
    assert_string_equal(got.device_platform, "Samsung Tizen");
    assert_int_equal(got.interval_s, 5);
    assert_int_equal(got.expires_ms, T0 + TTL);
    assert_int_equal(iv, 5);
    /* The other node, 2 s later: too soon for the history both share. */
    p = poll_of(id, 1, t + 2000, -1);
    assert_int_equal(b->m->lr_poll_find(b, &p, &got, &iv), QRL_ERR_SLOW_DOWN);
    assert_int_equal(iv, 10);
    assert_int_equal(got.id, id);
    assert_int_equal(got.interval_s, 5);
    t += 2000;
    /* Not this request's polls: nothing is counted, so the next poll on time is on time. */
    p = poll_of(id, 2, t + 1, -1); /* another device code */
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, &iv), QRL_ERR_NOT_FOUND);
    p = poll_of(id, 1, t + 2, -1);
    p.client_id = "other-app";
    assert_int_equal(b->m->lr_poll_find(b, &p, &got, &iv), QRL_ERR_NOT_FOUND);
    p = poll_of(id + 999, 1, t + 3, -1);
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, &iv), QRL_ERR_NOT_FOUND);
    /* Held for at least the request's interval: exempt, not counted; a shorter hold counts. */
    p = poll_of(id, 1, t + 4, 5);
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, &iv), QRL_OK);
    assert_int_equal(iv, 10);
    p = poll_of(id, 1, t + 5, 4);
    assert_int_equal(b->m->lr_poll_find(b, &p, &got, &iv), QRL_ERR_SLOW_DOWN);
    assert_int_equal(iv, 15);
    t += 5;
    p = poll_of(id, 1, t + 14000, -1);
    assert_int_equal(a->m->lr_poll_find(a, &p, NULL, &iv), QRL_ERR_INVALID);
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, NULL), QRL_OK);
    /* What lr_poll keeps is the same history. */
    assert_int_equal(b->m->lr_poll(b, id, t + 14001, 0, 1000, 5, 60, &iv), QRL_ERR_SLOW_DOWN);
    assert_int_equal(iv, 20);

    /* A request that names a DPoP key counts only the polls proved with it: the two refused
     * first leave the third, 2 ms later, on time. */
    memset(keyed.dpop_jkt, 'k', QRL_DPOP_JKT_LEN);
    keyed.dpop_jkt[QRL_DPOP_JKT_LEN] = '\0';
    memset(other, 'j', QRL_DPOP_JKT_LEN);
    other[QRL_DPOP_JKT_LEN] = '\0';
    assert_int_equal(a->m->lr_create(a, &keyed), QRL_OK);
    p = poll_of(keyed.id, 3, t, -1);
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, &iv), QRL_ERR_NOT_FOUND);
    p.dpop_jkt = other;
    p.now_ms = t + 1;
    assert_int_equal(b->m->lr_poll_find(b, &p, &got, &iv), QRL_ERR_NOT_FOUND);
    p.dpop_jkt = keyed.dpop_jkt;
    p.now_ms = t + 2;
    assert_int_equal(b->m->lr_poll_find(b, &p, &got, &iv), QRL_OK);
    assert_string_equal(got.dpop_jkt, keyed.dpop_jkt);
    p.now_ms = t + 3;
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, &iv), QRL_ERR_SLOW_DOWN);
    /* A request without a key takes a poll with one. */
    p = poll_of(id, 1, t + 60000, -1);
    p.dpop_jkt = other;
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, &iv), QRL_OK);
    /* Input it refuses. */
    p.client_id = NULL;
    assert_int_equal(a->m->lr_poll_find(a, &p, &got, &iv), QRL_ERR_INVALID);
    b->m->close(b);
}

struct first_race {
    qrl_store *st[2];
    pthread_barrier_t barrier;
    qrl_err rc[NTHREADS];
    int64_t count[NTHREADS];
};
struct first_racer {
    struct first_race *r;
    int i;
};

static void *first_racer_main(void *arg)
{
    struct first_racer *me = arg;
    qrl_store *st = me->r->st[me->i % 2];
    int64_t c;

    (void)st->m->ratelimit_peek(st, "warm", T0, 1000, &c);
    pthread_barrier_wait(&me->r->barrier);
    me->r->rc[me->i] =
        st->m->ratelimit_first_hit(st, "seen:race", "count:race", T0, 60000, &me->r->count[me->i]);
    return NULL;
}

/* ratelimit_first_hit: a first sight and its count in one atomic step, shared by the nodes;
 * 16 threads on two nodes seeing one thing at once count it once. */
static void test_ratelimit_first_hit(void **state)
{
    fixture *f = *state;
    qrl_store *a = f->st, *b = node(f);
    struct first_race r;
    struct first_racer who[NTHREADS];
    pthread_t th[NTHREADS];
    int64_t n = 0;
    int ok = 0;

    assert_non_null(a->m->ratelimit_first_hit);
    assert_int_equal(a->m->ratelimit_first_hit(a, "seen:1", "count", T0, 60000, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(b->m->ratelimit_first_hit(b, "seen:1", "count", T0 + 1, 60000, &n),
                     QRL_ERR_EXISTS);
    assert_int_equal(a->m->ratelimit_peek(a, "count", T0 + 1, 60000, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(b->m->ratelimit_first_hit(b, "seen:2", "count", T0 + 2, 60000, &n), QRL_OK);
    assert_int_equal(n, 2);
    /* What ratelimit_take of limit 1 keeps: given back, it is new again. */
    assert_int_equal(a->m->ratelimit_take(a, "seen:2", T0 + 3, 60000, 1, NULL),
                     QRL_ERR_RATE_LIMITED);
    assert_int_equal(a->m->ratelimit_give(a, "seen:2", T0 + 3, 60000, 1), QRL_OK);
    assert_int_equal(a->m->ratelimit_first_hit(a, "seen:2", "count", T0 + 4, 60000, &n), QRL_OK);
    assert_int_equal(n, 3);
    /* A window later both are new: the thing, and the count's window. */
    assert_int_equal(b->m->ratelimit_first_hit(b, "seen:1", "count", T0 + 60000, 60000, &n),
                     QRL_OK);
    assert_int_equal(n, 1);
    /* Input it refuses. */
    assert_int_equal(a->m->ratelimit_first_hit(a, "k", "k", T0, 60000, &n), QRL_ERR_INVALID);
    assert_int_equal(a->m->ratelimit_first_hit(a, "k", "c", T0, 0, &n), QRL_ERR_INVALID);
    assert_int_equal(a->m->ratelimit_first_hit(a, "k", "c", T0, 1000, NULL), QRL_ERR_INVALID);

    memset(&r, 0, sizeof r);
    r.st[0] = a;
    r.st[1] = b;
    pthread_barrier_init(&r.barrier, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        who[i] = (struct first_racer){.r = &r, .i = i};
        assert_int_equal(pthread_create(&th[i], NULL, first_racer_main, &who[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r.barrier);
    for (int i = 0; i < NTHREADS; i++) {
        if (r.rc[i] == QRL_OK) {
            ok++;
            assert_int_equal(r.count[i], 1);
        } else {
            assert_int_equal(r.rc[i], QRL_ERR_EXISTS);
        }
    }
    assert_int_equal(ok, 1);
    assert_int_equal(a->m->ratelimit_peek(a, "count:race", T0, 60000, &n), QRL_OK);
    assert_int_equal(n, 1);
    b->m->close(b);
}

/* Redemption runs as one statement (the function qrlogin_redeem) for up to two tokens, as
 * statements of its own transaction for more; either way a failure writes nothing. */
static void test_lr_redeem_paths(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0), phone = add_device(st, acct, "Pixel", T0);
    int64_t id = add_approved_lr(st, 1, "WDJBMJHT", acct, phone);
    qrl_device_rec d = make_device(0, "TV", T0 + 3000), list[4];
    qrl_token_rec tok[3] = {make_token(1, QRL_TOKEN_ACCESS, T0 + 3000, T0 + 3603000),
                            make_token(2, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000),
                            make_token(3, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000)};
    qrl_lr_state s = QRL_LR_PENDING;
    qrl_lr_rec got;
    qrl_token_rec t;
    size_t n;

    /* Three tokens: the statements one by one. */
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, tok, 3, &s), QRL_OK);
    assert_int_equal(s, QRL_LR_REDEEMED);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(st->m->token_lookup(st, &tok[i].hash, &t), QRL_OK);
        assert_int_equal(t.device_id, d.id);
    }
    /* A token whose hash is taken: nothing of the redemption stays, in one statement or in
     * the approval and redemption of lr_approve_redeem. */
    id = add_approved_lr(st, 2, "BCDFGHJK", acct, phone);
    d = make_device(0, "TV 2", T0 + 3000);
    tok[1] = make_token(4, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000);
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, tok, 2, &s), QRL_ERR_EXISTS);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
    assert_int_equal(st->m->token_lookup(st, &tok[1].hash, &t), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_list(st, acct, list, 4, &n), QRL_OK);
    assert_int_equal(n, 2); /* the phone and the first TV */
    {
        int64_t id2 = add_lr(st, 3, "CDFGHJKL", T0);
        qrl_lr_cas scan = scan_cas(id2, phone), approve = approve_cas(id2, acct, phone);
        assert_int_equal(st->m->lr_transition(st, &scan), QRL_OK);
        assert_int_equal(st->m->lr_approve_redeem(st, &approve, &d, tok, 2), QRL_ERR_EXISTS);
        assert_int_equal(st->m->lr_get(st, id2, &got), QRL_OK);
        assert_int_equal(got.state, QRL_LR_SCANNED);
        tok[0] = make_token(5, QRL_TOKEN_ACCESS, T0 + 3000, T0 + 3603000);
        assert_int_equal(st->m->lr_approve_redeem(st, &approve, &d, tok, 2), QRL_OK);
        assert_int_equal(st->m->lr_get(st, id2, &got), QRL_OK);
        assert_int_equal(got.state, QRL_LR_REDEEMED);
        assert_int_equal(got.redeemed_device_id, d.id);
        assert_int_equal(d.account_id, acct);
        assert_int_equal(tok[1].device_id, d.id);
    }
}

/* Reads notifications on `c` for up to ms; adds each payload's ids to `s` and counts the
 * notifications and the longest payload. */
static void drain_notifications(PGconn *c, struct seen *s, int64_t ms, int *count, size_t *longest)
{
    int64_t t0 = ms_now();

    while (ms_now() - t0 < ms) {
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        (void)poll(&pfd, 1, 20);
        assert_true(PQconsumeInput(c));
        for (PGnotify *n; (n = PQnotifies(c)) != NULL; PQfreemem(n)) {
            size_t len = strlen(n->extra);
            (*count)++;
            if (len > *longest)
                *longest = len;
            for (char *p = n->extra, *end; *p != '\0'; p = *end == ',' ? end + 1 : end) {
                long long v = strtoll(p, &end, 10);
                assert_true(end != p && (*end == ',' || *end == '\0'));
                on_notify(s, v);
            }
        }
    }
}

struct deny_job {
    qrl_store *st;
    int64_t first;
    int n;
    pthread_barrier_t *barrier;
};

static void *deny_main(void *arg)
{
    struct deny_job *j = arg;

    pthread_barrier_wait(j->barrier);
    for (int i = 0; i < j->n; i++)
        assert_int_equal(
            move(j->st, j->first + i, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 1), QRL_OK);
    return NULL;
}

/* Notifications are sent after the commit, by the node's notifier, many ids to a NOTIFY:
 * - the payloads: comma-separated ids, each payload shorter than PostgreSQL's 8000 bytes;
 * - a batch from anyone reaches the hook id by id ("0" too: anything may have changed);
 * - 128 changes made by 16 threads of another node at once: every id arrives, in at most as
 *   many notifications, none longer than the limit;
 * - a transaction that rolled back tells nobody, one that committed tells everybody. */
static void test_notify_batches(void **state)
{
    fixture *f = *state;
    qrl_store *a = f->st, *b = node(f);
    struct seen s = {.mu = PTHREAD_MUTEX_INITIALIZER}, heard = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int64_t ids[2000], acct = add_account(a, "alice", 0), phone = add_device(a, acct, "P", T0);
    static char text[2000 * 22];
    size_t len, longest = 0;
    int zeros, count = 0, payloads = 1;

    /* The payloads. */
    for (int i = 0; i < 2000; i++)
        ids[i] = i % 3 == 0 ? -(INT64_C(1) << 62) - i : INT64_C(3558000000000000) + i;
    len = qrl__pg_payloads(ids, 2000, text, sizeof text);
    assert_true(len > 0);
    assert_int_equal(strlen(text), len);
    {
        int i = 0;
        for (char *p = text, *end;; p = end + 1) {
            size_t plen = strcspn(p, ";");
            assert_true(plen > 0 && plen < 8000);
            for (char *q = p; q < p + plen; q = *end == ',' ? end + 1 : end) {
                assert_true(i < 2000);
                assert_int_equal(strtoll(q, &end, 10), ids[i++]);
            }
            end = p + plen;
            if (*end == '\0')
                break;
            payloads++;
        }
        assert_int_equal(i, 2000);
        assert_true(payloads >= 5);
    }
    assert_int_equal(qrl__pg_payloads(ids, 2000, text, 100), 0);
    len = qrl__pg_payloads(ids, 1, text, sizeof text);
    assert_int_equal(len, strlen(text));
    assert_string_equal(text, "-4611686018427387904");

    /* A batch from anyone. */
    assert_int_equal(a->m->set_notify(a, on_notify, &s), QRL_OK);
    assert_true(wait_seen(&s, 0, 0, 5000) >= 0);
    zeros = seen_zeros(&s);
    assert_int_equal(admin_int(f->uri, "SELECT count(pg_notify('qrlogin',"
                                       " '11,-12,-4611686018427387917,x,0,13'))"),
                     1);
    assert_true(wait_seen(&s, 13, 0, 5000) >= 0);
    assert_true(seen_has(&s, 11) && seen_has(&s, -12) && seen_has(&s, qrl_notice_key(13)));
    assert_int_equal(seen_zeros(&s), zeros + 1);

    /* 128 changes at once on another node. */
    {
        PGconn *l = admin(f->uri);
        pthread_barrier_t barrier;
        struct deny_job jobs[NTHREADS];
        pthread_t th[NTHREADS];
        PGresult *r = PQexec(l, "LISTEN qrlogin");
        assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        for (int i = 0; i < NTHREADS * 8; i++) {
            char code[QRL_USER_CODE_LEN + 1];
            snprintf(code, sizeof code, "C%07d", i);
            add_lr(a, 100 + (unsigned)i, code, T0);
        }
        pthread_barrier_init(&barrier, NULL, NTHREADS);
        for (int i = 0; i < NTHREADS; i++) {
            jobs[i] = (struct deny_job){.st = b,
                                        .first = make_lr(100 + (unsigned)i * 8, "", T0).id,
                                        .n = 8,
                                        .barrier = &barrier};
            assert_int_equal(pthread_create(&th[i], NULL, deny_main, &jobs[i]), 0);
        }
        for (int i = 0; i < NTHREADS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        for (int i = 0; i < NTHREADS * 8; i++)
            assert_true(wait_seen(&s, make_lr(100 + (unsigned)i, "", T0).id, 0, 5000) >= 0);
        drain_notifications(l, &heard, 500, &count, &longest);
        pthread_mutex_lock(&heard.mu);
        assert_int_equal(heard.n, NTHREADS * 8);
        pthread_mutex_unlock(&heard.mu);
        printf("test_notify_batches: %d changes came in %d notifications, the longest %zu "
               "bytes\n",
               NTHREADS * 8, count, longest);
        assert_true(count >= 1 && count <= NTHREADS * 8);
        assert_true(longest < 8000);
        PQfinish(l);
        /* One connection per node hears and tells: A's listens, B's (which installed no hook)
         * only tells; none of B's pooled connections notified. */
        assert_int_equal(admin_int(f->uri, "SELECT count(*) FROM pg_stat_activity"
                                           " WHERE datname = current_database()"
                                           " AND (query = 'LISTEN qrlogin'"
                                           " OR query LIKE 'SELECT count(pg_notify(%')"),
                         2);
    }

    /* A rolled back approval and redemption tells nobody (a taken token hash undoes it);
     * the change after it, of another request, arrives, so the first would have too. */
    {
        int64_t id = add_lr(a, 1, "WDJBMJHT", T0), later = add_lr(a, 2, "BCDFGHJK", T0);
        qrl_lr_cas scan = scan_cas(id, phone), approve = approve_cas(id, acct, phone);
        qrl_device_rec d = make_device(0, "TV", T0 + 3000);
        qrl_token_rec tok[2] = {make_token(1, QRL_TOKEN_ACCESS, T0 + 3000, T0 + 3603000),
                                make_token(1, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000)};

        assert_int_equal(b->m->lr_transition(b, &scan), QRL_OK);
        assert_true(wait_seen(&s, id, 0, 5000) >= 0);
        pthread_mutex_lock(&s.mu);
        s.n = 0;
        pthread_mutex_unlock(&s.mu);
        assert_int_equal(b->m->lr_approve_redeem(b, &approve, &d, tok, 2), QRL_ERR_EXISTS);
        assert_int_equal(move(b, later, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 5), QRL_OK);
        assert_true(wait_seen(&s, later, 0, 5000) >= 0);
        usleep(100000);
        assert_false(seen_has(&s, id));
        /* Approved and redeemed for real: heard. */
        tok[1] = make_token(2, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000);
        assert_int_equal(b->m->lr_approve_redeem(b, &approve, &d, tok, 2), QRL_OK);
        assert_true(wait_seen(&s, id, 0, 5000) >= 0);
    }
    assert_int_equal(a->m->set_notify(a, NULL, NULL), QRL_OK);
    b->m->close(b);
}

static void cluster_stop(void)
{
    if (cluster_dir[0] != '\0') {
        if (cluster("stop", NULL, 0) != 0)
            fprintf(stderr, "test_store_pg: could not stop the cluster in %s\n", cluster_dir);
        cluster_dir[0] = '\0';
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_migrate_reopen),
        T(test_store_open_dispatch),
        T(test_open_errors),
        T(test_migrate_concurrently),
        T(test_accounts),
        T(test_devices),
        T(test_device_revoke),
        T(test_tokens),
        T(test_log_has_no_values),
        T(test_token_rotate),
        T(test_token_rotate_refused),
        T(test_lr_create_find),
        T(test_lr_dpop_jkt),
        T(test_user_code_race),
        T(test_lr_transition),
        T(test_lr_redeem),
        T(test_lr_by_device),
        T(test_lr_approve_redeem),
        T(test_lr_poll),
        T(test_ratelimit),
        T(test_ratelimit_take),
        T(test_ratelimit_take_two_nodes),
        T(test_sweep),
        T(test_passkeys),
        T(test_challenges),
        T(test_challenge_per_device_bound),
        T(test_challenge_races_two_nodes),
        T(test_notices),
        T(test_notices_blocked),
        T(test_migrate_notices_from_v1),
        T(test_device_key_at_create),
        T(test_race_one_node),
        T(test_race_two_nodes),
        T(test_race_rotate_two_nodes),
        T(test_notify_other_node),
        T(test_notify_after_listener_killed),
        T(test_core_two_nodes),
        T(test_reconnect_after_kill),
        T(test_health),
        T(test_database_restart),
        T(test_lr_poll_find),
        T(test_ratelimit_first_hit),
        T(test_lr_redeem_paths),
        T(test_notify_batches),
    };
#undef T
    int rc;

    cluster_script = getenv("QRL_TEST_PG_SCRIPT");
    if (cluster_script == NULL || cluster_script[0] == '\0') {
        fprintf(stderr, "test_store_pg: QRL_TEST_PG_SCRIPT must name tests/pg/cluster.sh\n");
        return 1;
    }
    snprintf(cluster_dir, sizeof cluster_dir, "/tmp/qrl_pg_store_XXXXXX");
    if (mkdtemp(cluster_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (cluster("start", cluster_uri, sizeof cluster_uri) != 0 || cluster_uri[0] == '\0') {
        fprintf(stderr, "test_store_pg: %s start %s failed\n", cluster_script, cluster_dir);
        cluster_stop();
        return 1;
    }
    atexit(cluster_stop);
    rc = cmocka_run_group_tests_name("store_pg", tests, NULL, NULL);
    cluster_stop();
    return rc;
}
