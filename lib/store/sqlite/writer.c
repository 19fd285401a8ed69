/* SPDX-License-Identifier: MIT */
/*
 * The writer of the SQLite store: group commit, the syncer, the checkpointer.
 *
 * Every write goes through one writer thread that runs whatever writes are queued as one
 * transaction and commits them together: one fsync of the WAL makes a whole batch durable. A
 * caller blocks until the commit of its batch, so a write is on disk before the answer, as
 * store.h promises, but many writes share the cost of one flush (3 ms on the machines we
 * measured; a fsync per write would cap a server at ~300 durable writes a second).
 *
 * Each write keeps its own atomicity inside the batch: qrl__sqlite_tx_begin()/qrl__sqlite_tx_end()
 * become a savepoint on the writer's connection, and single statements are atomic by themselves. A
 * batch that only holds writes that need not survive a power loss (new login requests, last-seen
 * times, rate counters, sweeps) commits lazily: walbuf writes its frames to the WAL but skips the
 * fsync (qrl__walbuf_set_lazy). Still safe against kill -9, and made power-safe by the next durable
 * commit, whose fsync of the WAL covers every frame written before it. (This used to switch
 * the connection to synchronous=NORMAL, which walbuf must never see: walbuf.h.)
 *
 * Durable batches are pipelined: the writer commits them lazily as well and hands their ops to
 * the syncer thread, which fdatasyncs the WAL and only then wakes them. One fdatasync covers
 * every batch committed before it started, and the writer runs the next batch meanwhile
 * instead of leaving the core idle during the flush. Callers still hear of a durable write only
 * once it is on disk; other connections may read it between its commit and the flush, as they
 * read lazy writes (docs/architecture.md says why nothing anyone is told rests on that).
 *
 * Checkpoints run on a third thread, so that the writer never waits for one (see
 * CHECKPOINT_PAGES). Lifecycle: qrl__sqlite_writer_start() when the store opens, then
 * qrl__sqlite_submit() from any thread, qrl__sqlite_writer_stop() at close, which lets every
 * queued write finish first.
 *
 * Test builds (QRL_TEST_HOOKS) can hold the writer and the syncer (test_hooks.h), so that tests
 * can put chosen writes into one batch; release builds contain none of it.
 *
 * For operators (the store's `health` method, qrl__sqlite_health): histograms of each commit's
 * time, each fdatasync's time and each batch's size, kept with relaxed atomic adds (two clock
 * reads and a few adds per commit), and a probe of the database's write lock for /readyz.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../walbuf.h"
#include "crash.h"
#include "sqlite_internal.h"
#include "test_hooks.h"

/* Most writes taken into one transaction. Bounds how long the first of them waits. */
#define BATCH_MAX QRL__SQLITE_BATCH_MAX

/* --- statistics and the write probe (the store's `health` method) ---------------------------
 * Process-wide, like wal_syncs below: the store handle has no room of its own for them, and a
 * server opens one store. */

/* Commit and flush times, in microseconds: a lazy commit takes tens to hundreds of them, a
 * flush milliseconds, a stalled disk seconds. */
#define TIME_BUCKETS 13
static const uint64_t time_bounds_us[TIME_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};
/* Writes per batch: powers of two up to BATCH_MAX. */
#define SIZE_BUCKETS 11
static const uint64_t size_bounds[SIZE_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

_Static_assert(TIME_BUCKETS <= QRL_STORE_HIST_MAX && SIZE_BUCKETS <= QRL_STORE_HIST_MAX,
               "a qrl_store_hist holds at most QRL_STORE_HIST_MAX bounds");

struct stat_hist {
    _Atomic uint64_t count[QRL_STORE_HIST_MAX + 1];
    _Atomic uint64_t sum;
};
static struct stat_hist commit_hist, sync_hist, size_hist;
/* Batches committed: the probe learns from it that our own writer holds the write lock. */
static _Atomic uint64_t commits_done;

static void hist_add(struct stat_hist *h, const uint64_t *bounds, size_t n, uint64_t v)
{
    size_t b = 0;

    while (b < n && v > bounds[b])
        b++;
    atomic_fetch_add_explicit(&h->count[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

static void hist_read(const struct stat_hist *h, const uint64_t *bounds, size_t n,
                      qrl_store_hist *out)
{
    out->n = n;
    for (size_t i = 0; i < n; i++)
        out->le[i] = bounds[i];
    for (size_t i = 0; i <= n; i++)
        out->count[i] = atomic_load_explicit(&h->count[i], memory_order_relaxed);
    out->sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
}

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A batch of `n` writes ended, begun at `t0`: counted when it committed. */
static void stat_commit(uint64_t t0, size_t n, qrl_err rc)
{
    if (rc != QRL_OK)
        return;
    hist_add(&commit_hist, time_bounds_us, TIME_BUCKETS, now_us() - t0);
    hist_add(&size_hist, size_bounds, SIZE_BUCKETS, n);
    atomic_fetch_add_explicit(&commits_done, 1, memory_order_relaxed);
}

/* Tries the write lock of the database on a connection of its own, which it never writes
 * through: BEGIN IMMEDIATE takes the lock or fails at once (no busy wait), ROLLBACK gives it
 * back. Our own writer holds the lock during each of its batches, so a refusal counts only if
 * our writer committed nothing meanwhile either: a few tries a few milliseconds apart. */
#define PROBE_TRIES 5
#define PROBE_PAUSE_MS 20

static qrl_err write_probe(sqlite_store *s)
{
    uint64_t before = atomic_load_explicit(&commits_done, memory_order_relaxed);
    sqlite3 *db = NULL;
    qrl_err rc = QRL_ERR_STORE;
    int src = sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                              qrl__walbuf_usable() ? QRL__WALBUF_VFS : NULL);

    for (int i = 0; src == SQLITE_OK && i < PROBE_TRIES; i++) {
        int brc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (brc == SQLITE_OK) {
            (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            rc = QRL_OK;
            break;
        }
        if (brc != SQLITE_BUSY) {
            qrl__sqlite_log_db(db, "readiness probe");
            rc = QRL_ERR_STORE;
            break;
        }
        if (atomic_load_explicit(&commits_done, memory_order_relaxed) != before) {
            rc = QRL_OK; /* our writer has the lock, and commits */
            break;
        }
        rc = QRL_ERR_BUSY;
        nanosleep(&(struct timespec){0, PROBE_PAUSE_MS * 1000000L}, NULL);
    }
    sqlite3_close(db);
    return rc;
}

qrl_err qrl__sqlite_health(qrl_store *st, int probe, qrl_store_health *out)
{
    if (st == NULL)
        return QRL_ERR_INVALID;
    if (out != NULL) {
        hist_read(&commit_hist, time_bounds_us, TIME_BUCKETS, &out->commit_us);
        hist_read(&sync_hist, time_bounds_us, TIME_BUCKETS, &out->sync_us);
        hist_read(&size_hist, size_bounds, SIZE_BUCKETS, &out->batch_writes);
    }
    return probe ? write_probe((sqlite_store *)st) : QRL_OK;
}

static int batch_durable(struct wop *w)
{
    for (; w != NULL; w = w->next)
        if (w->durable)
            return 1;
    return 0;
}

/* Commits the batch transaction; with an fsync of the WAL only when `durable`. The lazy mark
 * is taken off right after the commit, so that no other sync is ever skipped: neither the
 * checkpoint that wal_hook may run inside this commit (it takes the mark off too) nor the next
 * durable batch. If walbuf cannot mark the commit, it is simply durable. */
static qrl_err commit_batch(struct conn *c, int durable)
{
    qrl_err rc;

    if (!durable)
        (void)qrl__walbuf_set_lazy(c->db, 1);
    rc = qrl__sqlite_tx_end(c, 1);
    (void)qrl__walbuf_set_lazy(c->db, 0);
    return rc;
}

/* Runs one batch on the writer's connection, committing it with an fsync only when `durable`.
 * Sets every op's rc; returns the batch's (not QRL_OK: nothing of it was committed). */
static qrl_err run_batch(sqlite_store *s, struct conn *c, struct wop *batch, int durable)
{
    qrl_err rc = qrl__sqlite_exec_id(c, ST_BEGIN, "begin");

    if (rc == QRL_OK) {
        c->in_batch = 1;
        for (struct wop *w = batch; w != NULL; w = w->next) {
            w->rc = w->fn(w->arg);
            /* Some failures (disk full, I/O error) make SQLite roll the whole transaction
             * back: then nothing of this batch will be committed. A full disk stays what it
             * is for every write of the batch, a reason to come back later (QRL_ERR_BUSY). */
            if (sqlite3_get_autocommit(c->db)) {
                rc = w->rc == QRL_ERR_BUSY ? QRL_ERR_BUSY : QRL_ERR_STORE;
                break;
            }
        }
        c->in_batch = 0;
        QRL_CRASH_POINT_IF(rc == QRL_OK && batch_durable(batch), SQLITE_BEFORE_COMMIT);
        if (rc == QRL_OK)
            rc = commit_batch(c, durable);
        else
            qrl__sqlite_tx_end(c, 0);
    }
    /* After the commit, before any caller of the batch hears of it (store.h, lr_stamp). */
    qrl__sqlite_stamps_bump(s);
    for (struct wop *w = batch; w != NULL; w = w->next)
        if (rc != QRL_OK)
            w->rc = rc;
    return rc;
}

#ifdef QRL_TEST_HOOKS
/* Process-wide count of the syncer's fdatasync calls (test_hooks.h). */
static _Atomic uint64_t wal_syncs;

uint64_t qrl__sqlite_wal_syncs(void)
{
    return wal_syncs;
}

/* Test holds (test_hooks.h): while set, the writer takes no batch and the syncer starts
 * no fdatasync. One atomic load per batch otherwise. */
static _Atomic int hold_writer, hold_syncer, held_queued;

void qrl__sqlite_test_hold(int writer, int syncer)
{
    if (writer && !hold_writer)
        held_queued = 0;
    hold_writer = writer;
    hold_syncer = syncer;
}

int qrl__sqlite_test_held_queued(void)
{
    return held_queued;
}

static void wait_unheld(_Atomic int *hold)
{
    while (*hold) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* The writer waits here, with wmu held, while a test holds it. */
static void hold_point_writer(sqlite_store *s)
{
    if (hold_writer) {
        pthread_mutex_unlock(&s->wmu);
        wait_unheld(&hold_writer);
        pthread_mutex_lock(&s->wmu);
    }
}

static void hold_point_syncer(void)
{
    wait_unheld(&hold_syncer);
}

static void hold_count_queued(void)
{
    if (hold_writer)
        held_queued++;
}

static void count_wal_sync(void)
{
    wal_syncs++;
}
#else
/* Release builds: no holds and no count; these compile to nothing. */
static inline void hold_point_writer(sqlite_store *s)
{
    (void)s;
}
static inline void hold_point_syncer(void) {}
static inline void hold_count_queued(void) {}
static inline void count_wal_sync(void) {}
#endif

/* Wakes the caller of one op (its batch is committed, and synced if it had to be). */
static void wop_wake(struct wop *w)
{
    sem_post(&w->done);
}

/* Wakes the callers of a list of ops, in the order they were queued. */
static void wake_ops(struct wop *list)
{
    for (struct wop *w = list, *next; w != NULL; w = next) {
        next = w->next; /* w lives on its caller's stack: gone once woken */
        wop_wake(w);
    }
}

/* Opens the WAL file for the syncer, once, on the writer thread (the WAL exists once the store
 * is open: the opening connection migrated the schema through it), and makes its directory
 * entry durable, which SQLite's own first sync of the WAL would have done. On failure the
 * writer keeps syncing in its commits. */
static void sync_open(sqlite_store *s, struct conn *c)
{
    const char *wal = sqlite3_filename_wal(sqlite3_db_filename(c->db, "main"));
    char dir[4096];
    int fd, dfd;

    s->sync_tried = 1;
    if (wal == NULL || wal[0] == '\0' || strlen(wal) >= sizeof dir)
        return;
    if ((fd = open(wal, O_RDONLY | O_CLOEXEC)) < 0)
        return;
    snprintf(dir, sizeof dir, "%s", wal);
    dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        if (dfd >= 0)
            close(dfd);
        close(fd);
        return;
    }
    close(dfd);
    pthread_mutex_lock(&s->wmu);
    s->sync_fd = fd;
    pthread_mutex_unlock(&s->wmu);
}

/* The syncer: one fdatasync of the WAL for every op committed before it started, then their
 * callers hear of them. */
static void *syncer_main(void *arg)
{
    sqlite_store *s = arg;

    pthread_mutex_lock(&s->wmu);
    for (;;) {
        struct wop *ops, *next;
        uint64_t t0;
        int ok;

        while (s->shead == NULL && !s->sstop)
            pthread_cond_wait(&s->sync_cv, &s->wmu);
        if (s->shead == NULL)
            break;
        ops = s->shead;
        s->shead = s->stail = NULL;
        pthread_mutex_unlock(&s->wmu);
        hold_point_syncer();
        QRL_CRASH_POINT(SQLITE_BEFORE_FDATASYNC);
        t0 = now_us();
        ok = fdatasync(s->sync_fd) == 0;
        if (ok) {
            hist_add(&sync_hist, time_bounds_us, TIME_BUCKETS, now_us() - t0);
            count_wal_sync();
        } else {
            /* What reached the disk is unknown: these callers hear of a failure, and from now
             * on every durable batch syncs inside its own commit, where SQLite sees errors. */
            fprintf(stderr, "qrlogin: sqlite: fdatasync of the WAL failed: %s\n", strerror(errno));
            pthread_mutex_lock(&s->wmu);
            s->sync_failed = 1;
            pthread_mutex_unlock(&s->wmu);
        }
        for (struct wop *w = ops; w != NULL; w = next) {
            next = w->next; /* w lives on its caller's stack: gone once woken */
            if (!ok)
                w->rc = QRL_ERR_STORE;
            wop_wake(w);
        }
        pthread_mutex_lock(&s->wmu);
    }
    pthread_mutex_unlock(&s->wmu);
    return NULL;
}

/* Stops the syncer once it has synced and woken everything handed to it. */
static void syncer_stop(sqlite_store *s)
{
    if (!s->syncer_started)
        return;
    pthread_mutex_lock(&s->wmu);
    s->sstop = 1;
    pthread_cond_signal(&s->sync_cv);
    pthread_mutex_unlock(&s->wmu);
    pthread_join(s->syncer, NULL);
    s->syncer_started = 0;
}

/* Copy the WAL back into the database after every this many new frames (4 MiB of 1 KiB pages),
 * and at least once a second while anything was written. A checkpoint copies each distinct page
 * once, and hot pages (interior pages, the last leaf of each table) are in almost every batch,
 * so checkpoints of a few thousand frames copy much less than one per commit would. Under a
 * sustained write load a checkpoint rarely completes (the writer appends while it copies), so
 * the WAL only restarts at WAL_MAX_PAGES, after the writer's own checkpoint. Measured on the
 * device-authorization benchmark, against calling the checkpointer after every commit once
 * 16384 frames were reached: +7 % requests a second with 4096 (p99 25 -> 35 ms) and with 16384
 * (p99 25 -> 70 ms: longer copies compete with the writer for the one core). */
#define CHECKPOINT_PAGES 4096
#define CHECKPOINT_PERIOD_S 1
/* 64 MiB of 1 KiB pages. */
#define WAL_MAX_PAGES 65536

/* Called by SQLite after each commit of the writer (sqlite3_wal_hook). It replaces SQLite's
 * automatic checkpoint, which would run on the writer and stall every write queued behind it
 * for a flush of the database file. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    sqlite_store *s = arg;

    (void)name;
    /* This runs inside the commit, before commit_batch() takes the lazy mark off: take it off
     * now, so that a checkpoint below syncs for real. */
    (void)qrl__walbuf_set_lazy(db, 0);
    /* The checkpointer cannot catch up under a sustained write load on a busy machine: then
     * the writer checkpoints itself, which holds back new writes (back-pressure) and lets the
     * WAL restart, bounding it at about WAL_MAX_PAGES. */
    if (pages >= WAL_MAX_PAGES) {
        int src = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (src != SQLITE_OK && src != SQLITE_BUSY)
            qrl__sqlite_log_db(db, "checkpoint");
        return SQLITE_OK;
    }
    /* `pages` counts every frame since the WAL last restarted; signal once per CHECKPOINT_PAGES
     * new frames, not after every commit past the mark. */
    if (pages < s->ckpt_mark)
        s->ckpt_mark = 0; /* the WAL restarted */
    if (pages - s->ckpt_mark >= CHECKPOINT_PAGES) {
        s->ckpt_mark = pages;
        pthread_mutex_lock(&s->wmu);
        s->ckpt_due = 1;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->wmu);
    }
    return SQLITE_OK;
}

/* The checkpointer: PASSIVE checkpoints on its own connection never block the writer or the
 * readers; the WAL restarts from its beginning at the next write after a complete one. */
static void *ckpt_main(void *arg)
{
    sqlite_store *s = arg;
    struct conn *c = NULL;
    qrl_err rc = qrl__sqlite_conn_open(s->path, &c, NULL, 0);

    pthread_mutex_lock(&s->wmu);
    while (!s->wstop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += CHECKPOINT_PERIOD_S;
        if (!s->ckpt_due)
            pthread_cond_timedwait(&s->ckpt_cv, &s->wmu, &ts);
        if (s->wstop)
            break;
        s->ckpt_due = 0;
        pthread_mutex_unlock(&s->wmu);
        if (rc == QRL_OK) {
            int src = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
            if (src != SQLITE_OK && src != SQLITE_BUSY)
                qrl__sqlite_log_db(c->db, "checkpoint");
        }
        pthread_mutex_lock(&s->wmu);
    }
    pthread_mutex_unlock(&s->wmu);
    qrl__sqlite_conn_close(c);
    return NULL;
}

static void *writer_main(void *arg)
{
    sqlite_store *s = arg;
    struct conn *c = NULL;
    qrl_err open_rc;

    qrl__sqlite_reads_on_writer(s);
    open_rc = qrl__sqlite_conn_get(s, &c);

    if (open_rc == QRL_OK)
        sqlite3_wal_hook(c->db, wal_hook, s);

    pthread_mutex_lock(&s->wmu);
    for (;;) {
        struct wop *batch, *last;
        size_t n = 1;

        if (s->whead == NULL && !s->wstop) {
            while (s->whead == NULL && !s->wstop)
                pthread_cond_wait(&s->wwork, &s->wmu);
            /* Woken by the first write of a new batch: let the other threads runnable on this
             * core (the server's workers, when it shares one) run first, so that the writes
             * they are about to queue join this batch instead of each waking the writer again.
             * Where nothing else is runnable this returns at once. */
            pthread_mutex_unlock(&s->wmu);
            sched_yield();
            pthread_mutex_lock(&s->wmu);
        }
        if (s->whead == NULL)
            break;
        hold_point_writer(s);
        batch = last = s->whead;
        while (last->next != NULL && n < BATCH_MAX) {
            last = last->next;
            n++;
        }
        s->whead = last->next;
        if (s->whead == NULL)
            s->wtail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&s->wmu);

        if (open_rc != QRL_OK) {
            for (struct wop *w = batch; w != NULL; w = w->next)
                w->rc = open_rc;
        } else {
            int durable = batch_durable(batch), piped;
            uint64_t t0;
            qrl_err brc;

            if (durable && !s->sync_tried && s->syncer_started)
                sync_open(s, c);
            pthread_mutex_lock(&s->wmu);
            piped = durable && s->sync_fd >= 0 && !s->sync_failed;
            pthread_mutex_unlock(&s->wmu);
            /* A durable batch is committed without its fsync and handed to the syncer: the
             * writer goes on with the next batch while the disk flushes this one. */
            t0 = now_us();
            brc = run_batch(s, c, batch, durable && !piped);
            stat_commit(t0, n, brc);
            if (brc == QRL_OK && piped) {
                /* The lazy writes of the batch are done once committed, as in a batch of their
                 * own: woken now. Only the durable ones wait for the flush. */
                struct wop *dhead = NULL, **dt = &dhead, *dtail = NULL, *lazy = NULL, **lt = &lazy;
                for (struct wop *w = batch, *next; w != NULL; w = next) {
                    next = w->next;
                    w->next = NULL;
                    if (w->durable) {
                        *dt = dtail = w;
                        dt = &w->next;
                    } else {
                        *lt = w;
                        lt = &w->next;
                    }
                }
                wake_ops(lazy);
                pthread_mutex_lock(&s->wmu);
                if (s->stail != NULL)
                    s->stail->next = dhead;
                else
                    s->shead = dhead;
                s->stail = dtail;
                pthread_cond_signal(&s->sync_cv);
                continue; /* with wmu held, as the loop expects */
            }
        }

        /* Wake exactly the writers of this batch; the ones queued for the next batch sleep
         * on. (A shared condition variable would wake them all at every commit.) */
        wake_ops(batch);
        pthread_mutex_lock(&s->wmu);
    }
    pthread_mutex_unlock(&s->wmu);
    return NULL;
}

static void enqueue(sqlite_store *s, struct wop *w)
{
    hold_count_queued();
    pthread_mutex_lock(&s->wmu);
    if (s->wtail != NULL)
        s->wtail->next = w;
    else
        s->whead = w;
    s->wtail = w;
    pthread_cond_signal(&s->wwork);
    pthread_mutex_unlock(&s->wmu);
}

/* Queues a write and blocks the calling thread until its batch is committed (and flushed, for
 * a durable write): the writer posts the op's semaphore. */
qrl_err qrl__sqlite_submit(qrl_store *st, qrl_err (*fn)(void *), void *arg, int durable)
{
    sqlite_store *s = (sqlite_store *)st;
    struct wop w = {.fn = fn, .arg = arg, .durable = durable};

    if (s == NULL)
        return QRL_ERR_INVALID;
    /* The writer itself never queues (a write calling a write would wait for itself). */
    if (pthread_equal(pthread_self(), s->writer))
        return fn(arg);
    /* A write ends this thread's read scope for good (store.h): its snapshot must not outlive
     * the wait, and the reads after the write must see it. */
    qrl__sqlite_scope_drop(s);
    if (sem_init(&w.done, 0, 0) != 0)
        return QRL_ERR_NOMEM;
    enqueue(s, &w);
    while (sem_wait(&w.done) != 0 && errno == EINTR)
        ;
    sem_destroy(&w.done);
    return w.rc;
}

qrl_err qrl__sqlite_writer_start(sqlite_store *s, char *errbuf, size_t errlen)
{
    pthread_mutex_init(&s->wmu, NULL);
    pthread_cond_init(&s->wwork, NULL);
    pthread_cond_init(&s->sync_cv, NULL);
    s->sync_fd = -1;
    /* Without the syncer the writer syncs in its commits, as durable as before, slower. */
    s->syncer_started = pthread_create(&s->syncer, NULL, syncer_main, s) == 0;
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        syncer_stop(s);
        pthread_cond_destroy(&s->sync_cv);
        pthread_cond_destroy(&s->wwork);
        pthread_mutex_destroy(&s->wmu);
        qrl__sqlite_set_errbuf(errbuf, errlen, "cannot start the writer thread");
        return QRL_ERR_NOMEM;
    }
    s->writer_started = 1;
    pthread_cond_init(&s->ckpt_cv, NULL);
    /* Without the checkpointer the WAL only grows until close: a real failure, but not one
     * that loses data, so the store still opens. */
    s->ckpt_started = pthread_create(&s->ckpt, NULL, ckpt_main, s) == 0;
    if (!s->ckpt_started)
        qrl__sqlite_log_db(NULL, "cannot start the checkpoint thread");
    return QRL_OK;
}

void qrl__sqlite_writer_stop(sqlite_store *s)
{
    if (!s->writer_started)
        return;
    pthread_mutex_lock(&s->wmu);
    s->wstop = 1;
    pthread_cond_signal(&s->wwork);
    pthread_cond_signal(&s->ckpt_cv);
    pthread_mutex_unlock(&s->wmu);
    pthread_join(s->writer, NULL);
    syncer_stop(s); /* after the writer: it may hand the syncer a last batch */
    if (s->sync_fd >= 0)
        close(s->sync_fd);
    pthread_cond_destroy(&s->sync_cv);
    if (s->ckpt_started)
        pthread_join(s->ckpt, NULL);
    pthread_cond_destroy(&s->ckpt_cv);
    pthread_cond_destroy(&s->wwork);
    pthread_mutex_destroy(&s->wmu);
}
