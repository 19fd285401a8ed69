/* SPDX-License-Identifier: MIT */
/*
 * walbuf: an SQLite VFS shim that gathers the writes of one WAL commit into one write.
 *
 * Why: SQLite writes every WAL frame as two pwrite calls, the 24-byte frame header and then the
 * page. With the store's 1 KiB pages a new login request touches about 8 pages, so its commit
 * costs ~16 pwrite64 system calls (1-1.5 us each on the machines we measured), all of them on
 * the one writer thread that every write of the server waits for. The frames of a commit are
 * written back to back, so they can be passed on as one write when the commit syncs. On the
 * device-authorization benchmark (bench/wrk/device_auth.lua) that took the WAL's pwrite64 calls
 * from 7.5 to 0.05 per request and the server from ~9000 to ~13000 requests a second.
 *
 * What it does: "qrl-walbuf" sits over the default VFS (sqlite3_vfs_find(NULL), "unix" on
 * Linux); it is registered under its own name, not as the default, and the store opens its
 * connections with it. Files opened with SQLITE_OPEN_WAL get a buffer; every other file (the
 * database, temporary files) passes straight through. For a WAL file:
 * - xWrite at exactly the end of the buffered range, if it fits, is appended to the buffer;
 *   anything else first flushes the buffer (one write of the whole contiguous range through the
 *   real xWrite) and then starts a new buffer at its offset, or writes through when it is larger
 *   than the buffer (or the buffer cannot be allocated). So the file always ends up with the
 *   bytes of the writes in the order they were made.
 * - every method that could see or depend on the contents or the size of the file flushes
 *   first: xRead, xSync, xTruncate, xFileSize, xFileControl, xFetch, xUnfetch, xClose.
 * Usage profile: one writer connection appends frames; readers and the checkpointer never write
 * the WAL (their buffer stays empty and unallocated), so the shim costs them a branch per call.
 *
 * Visibility to other connections: SQLite publishes new frames in the shared wal-index right
 * after it has written them. Under PRAGMA synchronous=FULL it syncs the WAL at every commit
 * before that, and xSync flushes, so every committed frame is in the file (in the OS page
 * cache at least) before any other connection can learn that it exists. Hence the rule in
 * walbuf.h: connections that write through this VFS keep synchronous=FULL; commits that need no
 * fsync use the lazy flag below, never synchronous=NORMAL. A second line of defence is on the
 * database file, through which SQLite reaches the wal-index: before each of its shm methods
 * (xShmLock, xShmBarrier, xShmMap, xShmUnmap) the connection's own WAL is flushed. The index
 * header is published across an xShmBarrier, and the WAL write lock is handed on by xShmLock,
 * so no other connection can be told of, or write over, frames that this one still holds. That
 * matters for frames a large transaction spills before it commits: if it then rolls back they
 * are never synced, and a late flush would land on top of the next writer's frames.
 *
 * Lazy commits: qrl__walbuf_set_lazy() arms a flag on the WAL file for one commit; its xSync
 * then flushes (one pwrite) but skips the real fsync. The frames survive kill -9 (they are in
 * the page cache) and become power-safe with the next real sync of the WAL, since a sync covers
 * everything written before it: what synchronous=NORMAL gives, without its invisible frames.
 * Two syncs are never skipped: the one after a rewrite of the WAL header (a WAL restart; SQLite
 * syncs it even under synchronous=NORMAL, sqlite.org ticket ff5be73dee), and any sync once the
 * flag is disarmed: by the first skipped sync, or by the caller right after the commit, before
 * a checkpoint or a durable commit can run.
 *
 * Crashes: the buffer only ever holds frames of a transaction whose commit has not yet
 * returned from xSync, so a crash with data in the buffer loses nothing that was acknowledged:
 * that commit simply never happened. On a power loss after a flush but before the fsync, the
 * WAL may end in a torn tail (some frames on disk, some not, a frame half written). That is
 * harmless: recovery accepts a frame only if its salts match the WAL header and its checksum,
 * chained over the header and every earlier frame, matches, and only up to the last valid
 * commit frame; a partly written commit is dropped as a whole.
 *
 * Errors: a failed flush (ENOSPC gives SQLITE_FULL, EIO SQLITE_IOERR_WRITE, as from the real
 * xWrite) drops the buffer and is returned from the method that flushed. At commit that is
 * xSync, so SQLite fails the commit and rolls the transaction back; the caller is told, and
 * the wal-index never mentions the lost frames. A flush can also fail in a method that is not a
 * write (xRead, or the shm methods, which cannot report it): SQLite would then believe frames of
 * the open transaction were written that were not. So the error is also kept on the file: every
 * later xWrite and xSync fails with it, which fails that transaction's commit, until the
 * connection releases the WAL write lock (the transaction has ended). In locking_mode=EXCLUSIVE
 * SQLite takes no shm locks and the error would stay; the store never uses that mode.
 *
 * Threading: SQLite uses a file object from one thread at a time (that of its connection), so
 * the buffer needs no lock; a database file and its WAL, which point at each other, belong to
 * the same connection. The counters (test builds only) are atomic.
 *
 * Versions: all of the above rests on how SQLite writes and publishes WAL frames, which is
 * SQLite's internal behaviour, not its documented interface: the order of a frame's two
 * writes, a commit ending in xSync, the wal-index reached through the shm methods, the header
 * rewrite on a restart, SQLITE_FCNTL_JOURNAL_POINTER giving the WAL. So the store uses the shim
 * only with an SQLite library it was tested with (tested_versions[] below, checked against
 * sqlite3_libversion_number() at run time, since the shared library can be upgraded under the
 * binary); with any other the store opens its connections with SQLite's own VFS, one pwrite per
 * frame header and page again, and says so once on stderr. Adding a version means running the
 * unit tests (test_walbuf covers each guarantee above, including disk full and kill -9) and the
 * device-authorization benchmark with it, then one line below.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "walbuf.h"

/* Most bytes one WAL buffer holds: the largest write the unix VFS accepts (SQLite's unix VFS,
 * in its seekAndWriteFd(), passes at most 0x1ffff bytes to one pwrite and fails a longer xWrite
 * as SQLITE_FULL). That is 125 frames of 1 KiB pages, more than a typical group commit of the
 * store writes; a bigger commit costs one write per 125 frames instead of two per frame. */
#define BUF_CAP 0x1ffff
/* The WAL header: the first 32 bytes of the file, rewritten when the WAL restarts. */
#define WAL_HDR_SIZE 32
/* The wal-index lock slot of the WAL write lock (WAL_WRITE_LOCK in SQLite's WAL code), held by a
 * connection for the whole of a write transaction. */
#define SHM_WRITE_LOCK 0

struct wb_file {
    sqlite3_file base;     /* pMethods: &plain_methods or &wal_methods */
    sqlite3_file *real;    /* the default VFS's file, stored right after this struct */
    struct wb_file *peer;  /* a database file and its open WAL point at each other */
    unsigned char *buf;    /* WAL: bytes written but not passed on; BUF_CAP, on first need */
    sqlite3_int64 buf_off; /* WAL: file offset of buf[0] */
    int buf_len;           /* WAL: bytes in buf */
    int err;               /* WAL: a flush failed in this write transaction (see "Errors") */
    int lazy;              /* WAL: the next commit's sync may skip the real fsync */
    int hdr_unsynced;      /* WAL: the header was written since the last real sync */
};
/* The real file follows the struct and must be as aligned as SQLite's own allocations. */
_Static_assert(sizeof(struct wb_file) % 8 == 0, "the real file must stay 8-byte aligned");

#define REAL(p) ((p)->real->pMethods)

/* SQLite versions (sqlite3_libversion_number()) the shim was tested with. */
static const int tested_versions[] = {
    3040001, /* 3.40.1: Debian 12 (bookworm), and its security updates (3.40.1-2+deb12uN) */
};

#ifdef QRL_TEST_HOOKS
/* Real writes and syncs, for the tests (qrl__walbuf_stats). */
static atomic_uint_fast64_t n_writes, n_syncs;
#define COUNT(n) atomic_fetch_add_explicit(&(n), 1, memory_order_relaxed)
#else
#define COUNT(n) ((void)0)
#endif

static const sqlite3_io_methods plain_methods, wal_methods;

/* --- the buffer --------------------------------------------------------------------------- */

static int real_write(struct wb_file *p, const void *data, int n, sqlite3_int64 off)
{
    COUNT(n_writes);
    return REAL(p)->xWrite(p->real, data, n, off);
}

/* Passes the buffered bytes on as one write. The buffer is empty afterwards whatever happened;
 * a failure is also kept in p->err. */
static int buf_flush(struct wb_file *p)
{
    int rc;

    if (p->buf_len == 0)
        return SQLITE_OK;
    rc = real_write(p, p->buf, p->buf_len, p->buf_off);
    p->buf_len = 0;
    if (rc != SQLITE_OK && p->err == SQLITE_OK)
        p->err = rc;
    return rc;
}

static int buf_alloc(struct wb_file *p)
{
    if (p->buf == NULL)
        p->buf = sqlite3_malloc(BUF_CAP);
    return p->buf != NULL;
}

/* Flushes the WAL of the connection that owns database file `p`, before the wal-index is
 * touched. The shm methods cannot report a failure: it stays in the WAL's err. */
static void peer_flush(struct wb_file *p)
{
    if (p->peer != NULL)
        (void)buf_flush(p->peer);
}

/* --- methods shared by every file: straight through --------------------------------------- */

static int plain_close(sqlite3_file *f)
{
    struct wb_file *p = (struct wb_file *)f;

    if (p->peer != NULL)
        p->peer->peer = NULL;
    return REAL(p)->xClose(p->real);
}

static int plain_read(sqlite3_file *f, void *dst, int n, sqlite3_int64 off)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xRead(p->real, dst, n, off);
}

static int plain_write(sqlite3_file *f, const void *data, int n, sqlite3_int64 off)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xWrite(p->real, data, n, off);
}

static int plain_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xTruncate(p->real, size);
}

static int plain_sync(sqlite3_file *f, int flags)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xSync(p->real, flags);
}

static int plain_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xFileSize(p->real, size);
}

static int plain_lock(sqlite3_file *f, int level)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xLock(p->real, level);
}

static int plain_unlock(sqlite3_file *f, int level)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xUnlock(p->real, level);
}

static int plain_check_reserved(sqlite3_file *f, int *out)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xCheckReservedLock(p->real, out);
}

static int plain_file_control(sqlite3_file *f, int op, void *arg)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xFileControl(p->real, op, arg);
}

static int plain_sector_size(sqlite3_file *f)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xSectorSize(p->real);
}

static int plain_device_chars(sqlite3_file *f)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xDeviceCharacteristics(p->real);
}

static int plain_shm_map(sqlite3_file *f, int page, int page_size, int extend, void volatile **pp)
{
    struct wb_file *p = (struct wb_file *)f;

    peer_flush(p);
    return REAL(p)->xShmMap(p->real, page, page_size, extend, pp);
}

/* A connection gives up the WAL write lock when its write transaction has ended, committed or
 * rolled back: from then on a failed flush of that transaction no longer matters. */
static int plain_shm_lock(sqlite3_file *f, int ofst, int n, int flags)
{
    struct wb_file *p = (struct wb_file *)f;
    int rc;

    peer_flush(p);
    rc = REAL(p)->xShmLock(p->real, ofst, n, flags);
    if (p->peer != NULL && (flags & SQLITE_SHM_UNLOCK) && ofst == SHM_WRITE_LOCK)
        p->peer->err = SQLITE_OK;
    return rc;
}

static void plain_shm_barrier(sqlite3_file *f)
{
    struct wb_file *p = (struct wb_file *)f;

    peer_flush(p);
    REAL(p)->xShmBarrier(p->real);
}

static int plain_shm_unmap(sqlite3_file *f, int delete_flag)
{
    struct wb_file *p = (struct wb_file *)f;

    peer_flush(p);
    return REAL(p)->xShmUnmap(p->real, delete_flag);
}

static int plain_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xFetch(p->real, off, n, pp);
}

static int plain_unfetch(sqlite3_file *f, sqlite3_int64 off, void *ptr)
{
    struct wb_file *p = (struct wb_file *)f;
    return REAL(p)->xUnfetch(p->real, off, ptr);
}

/* --- WAL methods: buffer appends, flush before anything that looks ------------------------ */

static int wal_close(sqlite3_file *f)
{
    struct wb_file *p = (struct wb_file *)f;
    int rc = buf_flush(p);
    int rc2;

    sqlite3_free(p->buf);
    p->buf = NULL;
    rc2 = plain_close(f);
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *f, void *dst, int n, sqlite3_int64 off)
{
    int rc = buf_flush((struct wb_file *)f);
    return rc != SQLITE_OK ? rc : plain_read(f, dst, n, off);
}

static int wal_write(sqlite3_file *f, const void *data, int n, sqlite3_int64 off)
{
    struct wb_file *p = (struct wb_file *)f;
    int rc;

    if (p->err != SQLITE_OK)
        return p->err;
    if (off < WAL_HDR_SIZE)
        p->hdr_unsynced = 1;
    if (p->buf_len > 0 && off == p->buf_off + p->buf_len && n <= BUF_CAP - p->buf_len) {
        memcpy(p->buf + p->buf_len, data, (size_t)n);
        p->buf_len += n;
        return SQLITE_OK;
    }
    if ((rc = buf_flush(p)) != SQLITE_OK)
        return rc;
    if (n > BUF_CAP || !buf_alloc(p))
        return real_write(p, data, n, off);
    memcpy(p->buf, data, (size_t)n);
    p->buf_off = off;
    p->buf_len = n;
    return SQLITE_OK;
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int rc = buf_flush((struct wb_file *)f);
    return rc != SQLITE_OK ? rc : plain_truncate(f, size);
}

/* The commit point: after this returns, SQLite tells every connection of the new frames. */
static int wal_sync(sqlite3_file *f, int flags)
{
    struct wb_file *p = (struct wb_file *)f;
    int rc = buf_flush(p);

    if (rc == SQLITE_OK)
        rc = p->err;
    if (rc != SQLITE_OK)
        return rc;
    if (p->lazy && !p->hdr_unsynced) {
        p->lazy = 0;
        return SQLITE_OK;
    }
    COUNT(n_syncs);
    rc = REAL(p)->xSync(p->real, flags);
    if (rc == SQLITE_OK)
        p->hdr_unsynced = 0;
    return rc;
}

static int wal_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    int rc = buf_flush((struct wb_file *)f);
    return rc != SQLITE_OK ? rc : plain_file_size(f, size);
}

static int wal_file_control(sqlite3_file *f, int op, void *arg)
{
    int rc = buf_flush((struct wb_file *)f);
    return rc != SQLITE_OK ? rc : plain_file_control(f, op, arg);
}

static int wal_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    int rc = buf_flush((struct wb_file *)f);

    if (rc != SQLITE_OK) {
        *pp = NULL;
        return rc;
    }
    return plain_fetch(f, off, n, pp);
}

static int wal_unfetch(sqlite3_file *f, sqlite3_int64 off, void *ptr)
{
    int rc = buf_flush((struct wb_file *)f);
    return rc != SQLITE_OK ? rc : plain_unfetch(f, off, ptr);
}

static const sqlite3_io_methods plain_methods = {
    .iVersion = 3,
    .xClose = plain_close,
    .xRead = plain_read,
    .xWrite = plain_write,
    .xTruncate = plain_truncate,
    .xSync = plain_sync,
    .xFileSize = plain_file_size,
    .xLock = plain_lock,
    .xUnlock = plain_unlock,
    .xCheckReservedLock = plain_check_reserved,
    .xFileControl = plain_file_control,
    .xSectorSize = plain_sector_size,
    .xDeviceCharacteristics = plain_device_chars,
    .xShmMap = plain_shm_map,
    .xShmLock = plain_shm_lock,
    .xShmBarrier = plain_shm_barrier,
    .xShmUnmap = plain_shm_unmap,
    .xFetch = plain_fetch,
    .xUnfetch = plain_unfetch,
};

/* Locks, sector size and device characteristics do not depend on the contents; the shm
 * methods are only ever called on database files. */
static const sqlite3_io_methods wal_methods = {
    .iVersion = 3,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_file_size,
    .xLock = plain_lock,
    .xUnlock = plain_unlock,
    .xCheckReservedLock = plain_check_reserved,
    .xFileControl = wal_file_control,
    .xSectorSize = plain_sector_size,
    .xDeviceCharacteristics = plain_device_chars,
    .xShmMap = plain_shm_map,
    .xShmLock = plain_shm_lock,
    .xShmBarrier = plain_shm_barrier,
    .xShmUnmap = plain_shm_unmap,
    .xFetch = wal_fetch,
    .xUnfetch = wal_unfetch,
};

/* --- the VFS ------------------------------------------------------------------------------ */

#define ORIG(vfs) ((sqlite3_vfs *)(vfs)->pAppData)

/* Links a new WAL with its database file, so that the database's shm methods can flush it. */
static void link_database(struct wb_file *wal, const char *name)
{
    sqlite3_file *db = name != NULL ? sqlite3_database_file_object(name) : NULL;

    if (db != NULL && db->pMethods == &plain_methods) {
        wal->peer = (struct wb_file *)db;
        wal->peer->peer = wal;
    }
}

/* The methods tables are version 3 and call every method of the real file, so the real file
 * must have them all: the unix VFS does. */
static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    struct wb_file *p = (struct wb_file *)f;
    int rc;

    memset(p, 0, sizeof *p);
    p->real = (sqlite3_file *)(p + 1);
    rc = ORIG(vfs)->xOpen(ORIG(vfs), name, p->real, flags, out_flags);
    /* SQLite calls xClose even after a failed xOpen if pMethods is set: mirror the real file. */
    if (p->real->pMethods == NULL)
        return rc;
    if (rc == SQLITE_OK && p->real->pMethods->iVersion < 3) {
        p->real->pMethods->xClose(p->real);
        return SQLITE_CANTOPEN;
    }
    p->base.pMethods = (flags & SQLITE_OPEN_WAL) ? &wal_methods : &plain_methods;
    if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL))
        link_database(p, name);
    return rc;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    return ORIG(vfs)->xDelete(ORIG(vfs), name, sync_dir);
}

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    return ORIG(vfs)->xAccess(ORIG(vfs), name, flags, out);
}

static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    return ORIG(vfs)->xFullPathname(ORIG(vfs), name, n, out);
}

static void *vfs_dl_open(sqlite3_vfs *vfs, const char *name)
{
    return ORIG(vfs)->xDlOpen(ORIG(vfs), name);
}

static void vfs_dl_error(sqlite3_vfs *vfs, int n, char *msg)
{
    ORIG(vfs)->xDlError(ORIG(vfs), n, msg);
}

static void (*vfs_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    return ORIG(vfs)->xDlSym(ORIG(vfs), h, sym);
}

static void vfs_dl_close(sqlite3_vfs *vfs, void *h)
{
    ORIG(vfs)->xDlClose(ORIG(vfs), h);
}

static int vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    return ORIG(vfs)->xRandomness(ORIG(vfs), n, out);
}

static int vfs_sleep(sqlite3_vfs *vfs, int us)
{
    return ORIG(vfs)->xSleep(ORIG(vfs), us);
}

static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
    return ORIG(vfs)->xCurrentTime(ORIG(vfs), out);
}

static int vfs_last_error(sqlite3_vfs *vfs, int n, char *msg)
{
    return ORIG(vfs)->xGetLastError(ORIG(vfs), n, msg);
}

static int vfs_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    return ORIG(vfs)->xCurrentTimeInt64(ORIG(vfs), out);
}

static int vfs_set_syscall(sqlite3_vfs *vfs, const char *name, sqlite3_syscall_ptr fn)
{
    return ORIG(vfs)->xSetSystemCall(ORIG(vfs), name, fn);
}

static sqlite3_syscall_ptr vfs_get_syscall(sqlite3_vfs *vfs, const char *name)
{
    return ORIG(vfs)->xGetSystemCall(ORIG(vfs), name);
}

static const char *vfs_next_syscall(sqlite3_vfs *vfs, const char *name)
{
    return ORIG(vfs)->xNextSystemCall(ORIG(vfs), name);
}

static sqlite3_vfs walbuf_vfs;
static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_rc = SQLITE_ERROR;

static void register_vfs(void)
{
    sqlite3_vfs *orig = sqlite3_vfs_find(NULL);

    if (orig == NULL)
        return;
    /* Methods past the default VFS's version are never called: SQLite checks iVersion. */
    walbuf_vfs = (sqlite3_vfs){
        .iVersion = orig->iVersion < 3 ? orig->iVersion : 3,
        .szOsFile = (int)sizeof(struct wb_file) + orig->szOsFile,
        .mxPathname = orig->mxPathname,
        .zName = QRL__WALBUF_VFS,
        .pAppData = orig,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_full_pathname,
        .xDlOpen = vfs_dl_open,
        .xDlError = vfs_dl_error,
        .xDlSym = vfs_dl_sym,
        .xDlClose = vfs_dl_close,
        .xRandomness = vfs_randomness,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_current_time,
        .xGetLastError = vfs_last_error,
        .xCurrentTimeInt64 = vfs_current_time64,
        .xSetSystemCall = vfs_set_syscall,
        .xGetSystemCall = vfs_get_syscall,
        .xNextSystemCall = vfs_next_syscall,
    };
    register_rc = sqlite3_vfs_register(&walbuf_vfs, 0);
}

int qrl__walbuf_register(void)
{
    if (pthread_once(&register_once, register_vfs) != 0)
        return SQLITE_ERROR;
    return register_rc;
}

int qrl__walbuf_set_lazy(sqlite3 *db, int lazy)
{
    sqlite3_file *f = NULL;

    /* In WAL mode the "journal" of the main database is its WAL (sqlite3PagerJrnlFile()); when
     * the WAL is not open it is the unopened rollback journal, whose pMethods are not ours. */
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) != SQLITE_OK ||
        f == NULL || f->pMethods != &wal_methods)
        return SQLITE_NOTFOUND;
    ((struct wb_file *)f)->lazy = lazy != 0;
    return SQLITE_OK;
}

int qrl__walbuf_tested(int version)
{
    for (size_t i = 0; i < sizeof tested_versions / sizeof tested_versions[0]; i++)
        if (tested_versions[i] == version)
            return 1;
    return 0;
}

/* The guard's decision, made on first use: -1 not yet, 0 SQLite's own VFS, 1 walbuf. */
static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;
static int guard_state = -1;
#ifdef QRL_TEST_HOOKS
static int guard_version; /* qrl__walbuf_test_version(); 0: the library's */
#endif

int qrl__walbuf_usable(void)
{
    int v;

    pthread_mutex_lock(&guard_mu);
    if (guard_state < 0) {
        int version = sqlite3_libversion_number();
#ifdef QRL_TEST_HOOKS
        if (guard_version != 0)
            version = guard_version;
#endif
        guard_state = qrl__walbuf_tested(version);
        if (!guard_state)
            fprintf(stderr,
                    "qrlogin: sqlite: SQLite %d.%d.%d is not a version the walbuf VFS was tested"
                    " with; using SQLite's own VFS (slower writes)\n",
                    version / 1000000, version / 1000 % 1000, version % 1000);
    }
    v = guard_state;
    pthread_mutex_unlock(&guard_mu);
    return v;
}

#ifdef QRL_TEST_HOOKS
void qrl__walbuf_test_version(int version)
{
    pthread_mutex_lock(&guard_mu);
    guard_version = version;
    guard_state = -1;
    pthread_mutex_unlock(&guard_mu);
}

void qrl__walbuf_stats(uint64_t *writes, uint64_t *syncs)
{
    if (writes != NULL)
        *writes = atomic_load_explicit(&n_writes, memory_order_relaxed);
    if (syncs != NULL)
        *syncs = atomic_load_explicit(&n_syncs, memory_order_relaxed);
}
#endif
