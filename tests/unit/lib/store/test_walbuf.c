/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the walbuf VFS shim (lib/store/walbuf.c) and of the store's use of it.
 *
 * What a user would notice if it broke: a write committed by one connection that another
 * connection cannot see, or sees wrong (the shim holds WAL frames in memory); data lost across
 * a close or a kill -9; a commit that costs a write per frame again, or a durable write that
 * is not synced. The first group of tests drives SQLite directly through the shim, with no
 * store threads around, so the shim's process-wide counters (qrl__walbuf_stats) are exact; the
 * second group goes through the store, whose checkpoint thread may add syncs of its own, so
 * those tests count with a margin.
 *
 * Every test gets a fresh temporary directory (fixture_setup) and removes it afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "qrlogin/store.h"
#include "tmpdir.h"
#include "store/sqlite/test_hooks.h"
#include "store/walbuf.h"

#define T0 1700000000000LL /* a plausible "now" in ms */
#define TTL 120000LL       /* login request lifetime */
#define FRAME (24 + 1024)  /* a WAL frame: header and one 1 KiB page */
#define MAX_WRITE 0x1ffff  /* the largest write of the unix VFS, walbuf's buffer size */
#define NTHREADS 16
#define PER_THREAD 20

typedef struct fixture {
    char dir[64];
    char path[128];
    qrl_store *st;
} fixture;

/* --- fixture ------------------------------------------------------------------------------ */

static int fixture_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    if (f == NULL || qrl__walbuf_register() != SQLITE_OK) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "/tmp/qrl_test_walbuf_XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/walbuf.db", f->dir);
    *state = f;
    return 0;
}

static void disk_full(int on);

static int fixture_teardown(void **state)
{
    fixture *f = *state;

    disk_full(0);
    qrl__sqlite_test_hold(0, 0); /* a failed test must not leave the store's threads held */
    qrl__walbuf_test_version(0); /* nor the version guard pretending */
    if (f->st != NULL)
        f->st->m->close(f->st);
    remove_dir(f->dir);
    free(f);
    return 0;
}

static void store_open(fixture *f)
{
    char err[256] = "";

    assert_int_equal(qrl_store_sqlite_open(f->path, &f->st, err, sizeof err), QRL_OK);
}

static void store_close(fixture *f)
{
    f->st->m->close(f->st);
    f->st = NULL;
}

/* --- direct SQLite helpers ---------------------------------------------------------------- */

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg != NULL ? msg : sqlite3_errstr(rc));
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int64_t v = -1;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int integrity_ok(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int ok;

    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
    ok =
        sqlite3_step(s) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(s, 0), "ok") == 0;
    sqlite3_finalize(s);
    return ok;
}

/* A connection set up as the store sets up its own: 1 KiB pages, WAL, synchronous=FULL, no
 * automatic checkpoint (its syncs would blur the counts). vfs: QRL__WALBUF_VFS, or NULL for
 * SQLite's default (a connection that knows nothing of the shim, as another process would). */
static sqlite3 *db_open(const char *path, const char *vfs)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    exec(db, "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
             " PRAGMA wal_autocheckpoint=0");
    return db;
}

static int64_t wal_size(const fixture *f)
{
    char p[192];
    struct stat sb;

    snprintf(p, sizeof p, "%s-wal", f->path);
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

typedef struct counts {
    uint64_t writes, syncs;
} counts;

static counts stats_now(void)
{
    counts c;

    qrl__walbuf_stats(&c.writes, &c.syncs);
    return c;
}

static counts stats_since(counts before)
{
    counts now = stats_now();

    return (counts){now.writes - before.writes, now.syncs - before.syncs};
}

/* `n` rows of `bytes` random bytes each into t, in one transaction; a lazy commit if `lazy`. */
static void insert_rows(sqlite3 *db, int n, int bytes, int lazy)
{
    char sql[160];

    snprintf(sql, sizeof sql,
             "BEGIN IMMEDIATE; WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k"
             " WHERE i < %d) INSERT INTO t (v) SELECT randomblob(%d) FROM k",
             n, bytes);
    exec(db, sql);
    if (lazy)
        assert_int_equal(qrl__walbuf_set_lazy(db, 1), SQLITE_OK);
    exec(db, "COMMIT");
}

/* A writer through the shim with table t created and its first commit (which writes the WAL
 * header) behind it. */
static sqlite3 *writer_open(const fixture *f)
{
    sqlite3 *w = db_open(f->path, QRL__WALBUF_VFS);

    exec(w, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    return w;
}

/* --- the shim, driven directly ------------------------------------------------------------ */

/* A commit of ~80 frames reaches the file as one write and one sync. Without the shim SQLite
 * writes each frame as two pwrite calls: ~160 here. */
static void test_one_write_per_commit(void **state)
{
    fixture *f = *state;
    sqlite3 *w = writer_open(f);
    sqlite3 *r = db_open(f->path, NULL);
    int64_t size = wal_size(f);
    counts before = stats_now(), d;

    insert_rows(w, 100, 500, 0);
    d = stats_since(before);
    assert_true((wal_size(f) - size) / FRAME >= 40);
    assert_int_equal(d.writes, 1);
    assert_int_equal(d.syncs, 1);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 100);

    sqlite3_close(r);
    sqlite3_close(w);
}

/* A commit larger than the buffer is written in buffer-sized pieces, in order. */
static void test_large_commit(void **state)
{
    fixture *f = *state;
    sqlite3 *w = writer_open(f);
    sqlite3 *r = db_open(f->path, NULL);
    int64_t size = wal_size(f), frames;
    counts before = stats_now(), d;

    insert_rows(w, 1500, 900, 0); /* ~1500 frames, 1.5 MiB */
    d = stats_since(before);
    frames = (wal_size(f) - size) / FRAME;
    assert_true(frames >= 1500);
    assert_in_range(d.writes, 2, frames / (MAX_WRITE / FRAME) + 1);
    assert_int_equal(d.syncs, 1);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 1500);
    assert_true(integrity_ok(r));

    sqlite3_close(r);
    sqlite3_close(w);
}

/* Every commit is visible to a connection that is already reading the database, at once: the
 * frames are in the file before the wal-index announces them. */
static void test_commit_visible_at_once(void **state)
{
    fixture *f = *state;
    sqlite3 *w = writer_open(f);
    sqlite3 *r = db_open(f->path, NULL);
    sqlite3 *r2 = db_open(f->path, QRL__WALBUF_VFS);

    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 0);
    for (int i = 1; i <= 20; i++) {
        insert_rows(w, 50, 300, i % 2);
        assert_int_equal(query_int(r, "SELECT count(*) FROM t"), i * 50);
        assert_int_equal(query_int(r2, "SELECT count(*) FROM t"), i * 50);
    }
    assert_true(integrity_ok(r));

    sqlite3_close(r2);
    sqlite3_close(r);
    sqlite3_close(w);
}

/* A lazy commit writes (kill -9 keeps it) but does not sync; the mark lasts one commit. */
static void test_lazy_commit(void **state)
{
    fixture *f = *state;
    sqlite3 *w = writer_open(f);
    sqlite3 *r = db_open(f->path, NULL);
    counts before, d;

    before = stats_now();
    insert_rows(w, 3, 1000, 1);
    d = stats_since(before);
    assert_int_equal(d.writes, 1);
    assert_int_equal(d.syncs, 0);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 3);

    /* The next commit, not marked, syncs. */
    before = stats_now();
    insert_rows(w, 1, 100, 0);
    assert_int_equal(stats_since(before).syncs, 1);

    /* A mark taken off before the commit changes nothing. */
    before = stats_now();
    exec(w, "BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (1)");
    assert_int_equal(qrl__walbuf_set_lazy(w, 1), SQLITE_OK);
    assert_int_equal(qrl__walbuf_set_lazy(w, 0), SQLITE_OK);
    exec(w, "COMMIT");
    assert_int_equal(stats_since(before).syncs, 1);

    /* A connection that does not use the shim cannot be marked. */
    assert_int_equal(qrl__walbuf_set_lazy(r, 1), SQLITE_NOTFOUND);
    sqlite3_close(r);
    sqlite3_close(w);
}

/* A lazy commit that restarts the WAL still syncs the new WAL header, as SQLite does under
 * synchronous=NORMAL: frames after an unsynced header could be lost in a power cut. */
static void test_lazy_commit_syncs_wal_restart(void **state)
{
    fixture *f = *state;
    sqlite3 *w = writer_open(f);
    counts before, d;

    insert_rows(w, 20, 500, 0);
    exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_int_equal(wal_size(f), 0);

    before = stats_now();
    insert_rows(w, 1, 500, 1);
    d = stats_since(before);
    assert_int_equal(d.syncs, 1); /* the header's, not the commit's */
    assert_int_equal(d.writes, 2);
    assert_int_equal(query_int(w, "SELECT count(*) FROM t"), 21);
    sqlite3_close(w);
}

/* A transaction too large for the page cache spills frames to the WAL before it commits; if it
 * rolls back, those frames must reach the file before the write lock passes to another writer,
 * or they would later land on top of that writer's committed frames. (Without the flush in
 * xShmLock this test finds 207 of the 300 rows and a corrupt b-tree.) An UPDATE that does not
 * grow the file leaves page 1 clean, so the rollback itself reads nothing from the WAL. */
static void test_rollback_after_spill(void **state)
{
    fixture *f = *state;
    sqlite3 *w = writer_open(f);
    sqlite3 *other, *check;

    exec(w, "CREATE TABLE u (id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    insert_rows(w, 300, 900, 0);
    exec(w, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA cache_size=10");
    other = db_open(f->path, NULL);
    exec(w, "BEGIN IMMEDIATE; UPDATE t SET v = randomblob(900); ROLLBACK");
    exec(other, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 300)"
                " INSERT INTO u (v) SELECT zeroblob(900) FROM k");
    /* The connection that rolled back goes on reading and writing. */
    assert_int_equal(query_int(w, "SELECT count(*) FROM u WHERE v = zeroblob(900)"), 300);
    exec(w, "UPDATE t SET v = x'00' WHERE id = 1");

    check = db_open(f->path, NULL);
    assert_int_equal(query_int(check, "SELECT count(*) FROM u WHERE v = zeroblob(900)"), 300);
    assert_int_equal(query_int(check, "SELECT count(*) FROM t"), 300);
    assert_true(integrity_ok(check));
    sqlite3_close(check);
    sqlite3_close(other);
    sqlite3_close(w);
}

/* Fault injection: the unix VFS's pwrite fails with ENOSPC while `on`. */
static ssize_t pwrite_enospc(int fd, const void *buf, size_t n, off_t off)
{
    (void)fd, (void)buf, (void)n, (void)off;
    errno = ENOSPC;
    return -1;
}

static void disk_full(int on)
{
    sqlite3_vfs *unix_vfs = sqlite3_vfs_find("unix");
    sqlite3_syscall_ptr fn = on ? (sqlite3_syscall_ptr)pwrite_enospc : NULL;

    /* The unix VFS calls one of the two, depending on how SQLite was built. */
    assert_int_equal(unix_vfs->xSetSystemCall(unix_vfs, "pwrite", fn), SQLITE_OK);
    assert_int_equal(unix_vfs->xSetSystemCall(unix_vfs, "pwrite64", fn), SQLITE_OK);
}

/* A full disk fails the commit that could not be written, with SQLITE_FULL; nothing of it
 * becomes visible, and the connection works again once there is space. The same when the
 * write fails earlier, while the transaction reads frames it spilled. */
static void test_disk_full(void **state)
{
    fixture *f = *state;
    sqlite3 *w = writer_open(f);
    sqlite3 *r = db_open(f->path, NULL);

    insert_rows(w, 300, 900, 0);
    exec(w, "BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (randomblob(5000))");
    disk_full(1);
    assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_FULL);
    disk_full(0);
    if (!sqlite3_get_autocommit(w))
        exec(w, "ROLLBACK");
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 300);
    insert_rows(w, 1, 100, 0);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 301);

    exec(w, "PRAGMA cache_size=10; BEGIN IMMEDIATE; UPDATE t SET v = randomblob(900)");
    disk_full(1);
    assert_int_not_equal(sqlite3_exec(w, "SELECT sum(length(v)) FROM t", NULL, NULL, NULL),
                         SQLITE_OK);
    disk_full(0);
    if (!sqlite3_get_autocommit(w))
        assert_int_not_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    if (!sqlite3_get_autocommit(w))
        exec(w, "ROLLBACK");
    assert_int_equal(query_int(r, "SELECT count(*) FROM t WHERE length(v) = 100"), 1);
    insert_rows(w, 1, 100, 0);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 302);
    assert_true(integrity_ok(r));
    sqlite3_close(r);
    sqlite3_close(w);
}

/* --- through the store -------------------------------------------------------------------- */

/* A user code for request `seed`: 8 letters of the RFC 8628 alphabet, distinct per seed. */
static void user_code(unsigned seed, char out[9])
{
    static const char abc[] = "BCDFGHJKLMNPQRSTVWXZ";

    for (int i = 0; i < 8; i++, seed /= 20)
        out[i] = abc[seed % 20];
    out[8] = '\0';
}

static qrl_lr_rec make_lr(unsigned seed)
{
    qrl_lr_rec lr;

    memset(&lr, 0, sizeof lr);
    lr.id = 1 + (int64_t)seed;
    lr.device_code_hash.b[0] = 1;
    lr.scan_hash.b[0] = 2;
    memcpy(lr.device_code_hash.b + 1, &seed, sizeof seed);
    memcpy(lr.scan_hash.b + 1, &seed, sizeof seed);
    user_code(seed, lr.user_code);
    snprintf(lr.client_id, sizeof lr.client_id, "tv-app");
    snprintf(lr.scope, sizeof lr.scope, "openid");
    snprintf(lr.device_name, sizeof lr.device_name, "Living Room TV");
    snprintf(lr.device_kind, sizeof lr.device_kind, "tv");
    snprintf(lr.address, sizeof lr.address, "198.51.100.7");
    lr.created_ms = T0;
    lr.updated_ms = T0;
    lr.expires_ms = T0 + TTL;
    lr.interval_s = 5;
    lr.state = QRL_LR_PENDING;
    return lr;
}

static void add_account(qrl_store *st, const char *name)
{
    qrl_account_rec a;

    memset(&a, 0, sizeof a);
    snprintf(a.username, sizeof a.username, "%s", name);
    snprintf(a.display_name, sizeof a.display_name, "User %s", name);
    snprintf(a.pw_hash, sizeof a.pw_hash, "$argon2id$v=19$m=65536,t=2,p=1$fake");
    a.created_ms = T0;
    assert_int_equal(st->m->account_create(st, &a), QRL_OK);
}

/* One count on a separate connection that does not use the shim: what is really in the file. */
static int64_t file_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int64_t v;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    v = query_int(db, sql);
    sqlite3_close(db);
    return v;
}

struct creator {
    qrl_store *st;
    unsigned first;
    int64_t id[PER_THREAD];
    int ok;
};

static void *create_requests(void *arg)
{
    struct creator *c = arg;

    c->ok = 1;
    for (unsigned i = 0; i < PER_THREAD; i++) {
        qrl_lr_rec lr = make_lr(c->first + i);
        if (c->st->m->lr_create(c->st, &lr) != QRL_OK) {
            c->ok = 0;
            break;
        }
        c->id[i] = lr.id;
    }
    return NULL;
}

/* Writes of many threads, committed together, are readable as soon as each call returns, by
 * the writing thread and by any other connection; and they survive a reopen. */
static void test_store_batches_visible_and_kept(void **state)
{
    fixture *f = *state;
    struct creator c[NTHREADS];
    pthread_t th[NTHREADS];
    qrl_lr_rec got;

    store_open(f);
    for (int i = 0; i < NTHREADS; i++) {
        c[i] = (struct creator){.st = f->st, .first = 1000u + (unsigned)i * PER_THREAD};
        assert_int_equal(pthread_create(&th[i], NULL, create_requests, &c[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_true(c[i].ok);
    }
    assert_int_equal(file_int(f->path, "SELECT count(*) FROM login_requests"),
                     NTHREADS * PER_THREAD);
    for (int i = 0; i < NTHREADS; i++)
        for (int j = 0; j < PER_THREAD; j++)
            assert_int_equal(f->st->m->lr_get(f->st, c[i].id[j], &got), QRL_OK);

    store_close(f);
    store_open(f);
    for (int i = 0; i < NTHREADS; i++)
        for (int j = 0; j < PER_THREAD; j++) {
            assert_int_equal(f->st->m->lr_get(f->st, c[i].id[j], &got), QRL_OK);
            assert_int_equal(got.id, c[i].id[j]);
        }
}

/* Syncs of WAL files: in commits (through walbuf) and by the store's syncer thread. */
static uint64_t wal_syncs_now(void)
{
    return stats_now().syncs + qrl__sqlite_wal_syncs();
}

/* Every durable write is acknowledged only after a sync of the WAL (the writer's, in its
 * commit, or the syncer's, after it); lazy ones (new login requests) cause none. The store's
 * checkpoint thread may sync now and then, hence the margin. */
static void test_store_lazy_and_durable(void **state)
{
    fixture *f = *state;
    char name[32];
    uint64_t before, piped = qrl__sqlite_wal_syncs();

    store_open(f);
    before = wal_syncs_now();
    for (unsigned i = 0; i < 20; i++) {
        qrl_lr_rec lr = make_lr(i);
        assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_OK);
    }
    assert_in_range(wal_syncs_now() - before, 0, 3);

    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "user%d", i);
        before = wal_syncs_now();
        add_account(f->st, name);
        assert_true(wal_syncs_now() > before);
    }
    /* ...and those syncs were the syncer's: commits do not wait for the disk. */
    assert_true(qrl__sqlite_wal_syncs() - piped >= 20);
    assert_int_equal(file_int(f->path, "SELECT count(*) FROM login_requests"), 20);
    assert_int_equal(file_int(f->path, "SELECT count(*) FROM accounts"), 20);
}

struct held_write {
    qrl_store *st;
    int lazy;      /* lr_create, else a durable account_create */
    int64_t lr_id; /* nonzero: instead, moves this request to `to` (a claim or an approval) */
    qrl_lr_state to;
    const qrl_lr_rec *create; /* set: instead, lr_create of a copy of this request */
    int rc;
    atomic_int done;
    sem_t sem;
};

#define PHONE 7 /* the claiming and approving device */

static void *held_write_main(void *arg)
{
    struct held_write *h = arg;

    if (h->create != NULL) {
        qrl_lr_rec lr = *h->create;
        h->rc = h->st->m->lr_create(h->st, &lr);
    } else if (h->lr_id != 0) {
        qrl_lr_cas cas = {.id = h->lr_id, .to = h->to, .now_ms = T0 + 1000};
        if (h->to == QRL_LR_SCANNED) {
            cas.from_mask = QRL_LR_BIT(QRL_LR_PENDING);
            cas.set_claimed_device_id = PHONE;
        } else {
            cas.from_mask = QRL_LR_BIT(QRL_LR_SCANNED);
            cas.require_claimed_by = PHONE;
            cas.set_account_id = 1;
            cas.set_approving_device_id = PHONE;
        }
        h->rc = h->st->m->lr_transition(h->st, &cas);
    } else if (h->lazy) {
        qrl_lr_rec lr = make_lr(99);
        h->rc = h->st->m->lr_create(h->st, &lr);
    } else {
        qrl_account_rec acc;
        memset(&acc, 0, sizeof acc);
        snprintf(acc.username, sizeof acc.username, "%s", "held");
        snprintf(acc.display_name, sizeof acc.display_name, "%s", "User held");
        snprintf(acc.pw_hash, sizeof acc.pw_hash, "$argon2id$v=19$m=65536,t=2,p=1$fake");
        acc.created_ms = T0;
        h->rc = h->st->m->account_create(h->st, &acc);
    }
    atomic_store(&h->done, 1);
    sem_post(&h->sem);
    return NULL;
}

/* Waits (at most 30 s) until `n` writes are queued behind the held writer. */
static void wait_held_queued(int n)
{
    for (int i = 0; i < 30000 && qrl__sqlite_test_held_queued() < n; i++)
        usleep(1000);
    assert_int_equal(qrl__sqlite_test_held_queued(), n);
}

/* Waits (at most 30 s) for a held write's return. */
static void wait_returned(struct held_write *h)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    assert_int_equal(sem_timedwait(&h->sem, &ts), 0);
}

/* A lazy write committed in the same batch as a durable one is acknowledged at the commit: it
 * does not wait for the durable write's flush (a device authorization queued with an approval
 * would otherwise wait for the disk). The writer is held until both are queued, so that they
 * share a batch, and the syncer is held until the lazy write has returned. */
static void test_store_lazy_not_held_by_flush(void **state)
{
    fixture *f = *state;
    struct held_write d = {.lazy = 0}, l = {.lazy = 1};
    pthread_t td, tl;

    store_open(f);
    add_account(f->st, "warm"); /* the syncer has opened the WAL */
    d.st = l.st = f->st;
    sem_init(&d.sem, 0, 0);
    sem_init(&l.sem, 0, 0);
    qrl__sqlite_test_hold(1, 1);
    assert_int_equal(pthread_create(&td, NULL, held_write_main, &d), 0);
    assert_int_equal(pthread_create(&tl, NULL, held_write_main, &l), 0);
    wait_held_queued(2);
    qrl__sqlite_test_hold(0, 1); /* one batch of both; its flush held */
    wait_returned(&l);
    assert_int_equal(l.rc, QRL_OK);
    assert_int_equal(atomic_load(&d.done), 0); /* still waiting for the disk */
    qrl__sqlite_test_hold(0, 0);
    assert_int_equal(pthread_join(td, NULL), 0);
    assert_int_equal(pthread_join(tl, NULL), 0);
    assert_int_equal(d.rc, QRL_OK);
    sem_destroy(&d.sem);
    sem_destroy(&l.sem);
}

/* A claim (a move to SCANNED) decides nothing and is lazy, like a new request: acknowledged at
 * its commit. The approval that follows it in the same batch waits for the flush. */
static void test_store_claim_lazy_approval_durable(void **state)
{
    fixture *f = *state;
    qrl_lr_rec lr = make_lr(5);
    struct held_write c = {.to = QRL_LR_SCANNED}, a = {.to = QRL_LR_APPROVED};
    pthread_t tc, ta;

    store_open(f);
    add_account(f->st, "warm"); /* the syncer has opened the WAL */
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_OK);
    c.st = a.st = f->st;
    c.lr_id = a.lr_id = lr.id;
    sem_init(&c.sem, 0, 0);
    sem_init(&a.sem, 0, 0);
    qrl__sqlite_test_hold(1, 1);
    assert_int_equal(pthread_create(&tc, NULL, held_write_main, &c), 0);
    wait_held_queued(1);
    assert_int_equal(pthread_create(&ta, NULL, held_write_main, &a), 0); /* queued second */
    wait_held_queued(2);
    qrl__sqlite_test_hold(0, 1); /* one batch of both; its flush held */
    wait_returned(&c);
    assert_int_equal(c.rc, QRL_OK);
    assert_int_equal(atomic_load(&a.done), 0); /* the approval waits for the disk */
    qrl__sqlite_test_hold(0, 0);
    assert_int_equal(pthread_join(tc, NULL), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(a.rc, QRL_OK);
    assert_int_equal(file_int(f->path, "SELECT state FROM login_requests"), QRL_LR_APPROVED);
    sem_destroy(&c.sem);
    sem_destroy(&a.sem);
}

/* Device authorizations share a batch without a savepoint each (lr_create_w): one that fails
 * (its id is taken) must be backed out alone, by SQLite's statement rollback, while the writes
 * queued before and after it in the same batch commit. */
static void test_store_failed_create_in_batch(void **state)
{
    fixture *f = *state;
    qrl_lr_rec a = make_lr(10), dup = make_lr(11), c = make_lr(12), got;
    struct held_write h[3] = {{.create = &a}, {.create = &dup}, {.create = &c}};
    pthread_t t[3];

    store_open(f);
    add_account(f->st, "warm");
    dup.id = a.id; /* its own codes, a's primary key */
    qrl__sqlite_test_hold(1, 0);
    for (int i = 0; i < 3; i++) {
        h[i].st = f->st;
        sem_init(&h[i].sem, 0, 0);
        assert_int_equal(pthread_create(&t[i], NULL, held_write_main, &h[i]), 0);
        wait_held_queued(i + 1); /* queued in this order */
    }
    qrl__sqlite_test_hold(0, 0); /* one batch of all three */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        sem_destroy(&h[i].sem);
    }
    assert_int_equal(h[0].rc, QRL_OK);
    assert_int_equal(h[1].rc, QRL_ERR_EXISTS);
    assert_int_equal(h[2].rc, QRL_OK);
    assert_int_equal(file_int(f->path, "SELECT count(*) FROM login_requests"), 2);
    assert_int_equal(f->st->m->lr_get(f->st, a.id, &got), QRL_OK);
    assert_string_equal(got.user_code, a.user_code);
    assert_memory_equal(got.device_code_hash.b, a.device_code_hash.b, QRL_HASH_BYTES);
    assert_int_equal(f->st->m->lr_get(f->st, c.id, &got), QRL_OK);
    assert_string_equal(got.user_code, c.user_code);
    /* The failed one left nothing a phone could type. */
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, dup.user_code, T0 + 1, &got),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, c.user_code, T0 + 1, &got),
                     QRL_OK);
    assert_int_equal(got.id, c.id);
}

/* A lazy write that has returned survives kill -9: its frames left the buffer at commit. */
static void test_store_lazy_survives_sigkill(void **state)
{
    fixture *f = *state;
    int status = 0;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        qrl_store *st = NULL;
        qrl_lr_rec lr = make_lr(7);

        if (qrl_store_sqlite_open(f->path, &st, NULL, 0) != QRL_OK)
            _exit(2);
        if (st->m->lr_create(st, &lr) != QRL_OK)
            _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_int_equal(file_int(f->path, "SELECT count(*) FROM login_requests"), 1);
}

/* --- the version guard -------------------------------------------------------------------- */

/* The shim is used only with an SQLite it was tested with (walbuf.c, "Versions"). */
static void test_version_guard(void **state)
{
    (void)state;
    assert_true(qrl__walbuf_tested(3040001)); /* Debian 12's 3.40.1 */
    assert_false(qrl__walbuf_tested(3040000));
    assert_false(qrl__walbuf_tested(3040002));
    assert_false(qrl__walbuf_tested(3041000));
    assert_false(qrl__walbuf_tested(3045001));
    assert_false(qrl__walbuf_tested(3039004));
    assert_false(qrl__walbuf_tested(0));
    assert_false(qrl__walbuf_tested(-1));
    /* The store decides by the library it runs with, not the headers it was built with. */
    assert_int_equal(qrl__walbuf_usable(), qrl__walbuf_tested(sqlite3_libversion_number()));
}

/* Counts the lines of `path` that contain `needle`. */
static int lines_with(const char *path, const char *needle)
{
    char line[512];
    int n = 0;
    FILE *fp = fopen(path, "r");

    assert_non_null(fp);
    while (fgets(line, sizeof line, fp) != NULL)
        if (strstr(line, needle) != NULL)
            n++;
    fclose(fp);
    return n;
}

/* With an SQLite the shim was not tested with, the store works on SQLite's own VFS (no WAL
 * write goes through the shim), keeps what it was told, and says so once on stderr. */
static void test_store_untested_version(void **state)
{
    fixture *f = *state;
    char log[160];
    qrl_lr_rec lr = make_lr(11), got;
    counts before, after;
    int saved, fd;

    snprintf(log, sizeof log, "%s/stderr.txt", f->dir);
    fflush(stderr);
    saved = dup(2);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);

    qrl__walbuf_test_version(3039004);
    before = stats_now();
    store_open(f);
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_OK);
    add_account(f->st, "alice"); /* a durable write */
    store_close(f);
    store_open(f); /* a second store: no second message */
    assert_int_equal(f->st->m->lr_get(f->st, lr.id, &got), QRL_OK);
    assert_string_equal(got.user_code, lr.user_code);
    store_close(f);
    after = stats_now();
    qrl__walbuf_test_version(0);

    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    assert_int_equal(after.writes, before.writes);
    assert_int_equal(after.syncs, before.syncs);
    assert_int_equal(file_int(f->path, "SELECT count(*) FROM login_requests"), 1);
    assert_int_equal(file_int(f->path, "SELECT count(*) FROM accounts"), 1);
    assert_int_equal(lines_with(log, "walbuf"), 1);
    assert_int_equal(lines_with(log, "3.39.4"), 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_one_write_per_commit),
        T(test_large_commit),
        T(test_commit_visible_at_once),
        T(test_lazy_commit),
        T(test_lazy_commit_syncs_wal_restart),
        T(test_rollback_after_spill),
        T(test_disk_full),
        T(test_store_batches_visible_and_kept),
        T(test_store_lazy_and_durable),
        T(test_store_lazy_not_held_by_flush),
        T(test_store_claim_lazy_approval_durable),
        T(test_store_failed_create_in_batch),
        T(test_store_lazy_survives_sigkill),
        T(test_version_guard),
        T(test_store_untested_version),
    };
#undef T
    return cmocka_run_group_tests_name("walbuf", tests, NULL, NULL);
}
