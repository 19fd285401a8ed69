/* SPDX-License-Identifier: MIT */
/*
 * walbuf: an SQLite VFS shim that turns the many small writes of one WAL commit into one write
 * (lib/store/walbuf.c explains why and what it guarantees). Internal to the SQLite store.
 *
 * Guard: the shim relies on how SQLite writes WAL frames, so the store uses it only when
 * qrl__walbuf_usable() says the SQLite library in use is one it was tested with (walbuf.c,
 * "Versions"); otherwise it opens its connections with SQLite's default VFS (zVfs NULL).
 *
 * Lifecycle: qrl__walbuf_register() once (any thread, any number of times) -> open connections
 * with sqlite3_open_v2(..., QRL__WALBUF_VFS) -> use them. The VFS stays registered for the life
 * of the process.
 *
 * Rule for callers: every connection that writes through this VFS keeps PRAGMA
 * synchronous=FULL. The shim holds WAL frames in memory until the commit's xSync; under
 * synchronous=NORMAL there is no xSync at commit, and other connections would be told of frames
 * that are not yet in the file. Use qrl__walbuf_set_lazy() for commits that need no fsync.
 */
#ifndef QRL_STORE_WALBUF_H
#define QRL_STORE_WALBUF_H

#include <stdint.h>

#include <sqlite3.h>

/* The name to pass as sqlite3_open_v2()'s zVfs. */
#define QRL__WALBUF_VFS "qrl-walbuf"

/* Registers the VFS over the default one (not as the new default). Thread-safe and idempotent.
 * Returns SQLITE_OK, or an SQLite error code when SQLite cannot initialise or has no default
 * VFS. */
int qrl__walbuf_register(void);

/* lazy != 0: the next commit of `db` writes its WAL frames to the file (so they survive kill -9
 * and are visible to every connection) but skips the fsync; they become power-safe with the
 * next real sync of the WAL. Armed for one commit: the first skipped sync disarms it. lazy == 0
 * disarms it; call it right after the commit so no later sync (a checkpoint, another commit) is
 * ever skipped. Call only from the thread using `db`, inside a write transaction (the WAL is
 * open then). Returns SQLITE_OK, or SQLITE_NOTFOUND when the connection has no WAL opened
 * through this VFS (nothing changed: the commit syncs as usual). */
int qrl__walbuf_set_lazy(sqlite3 *db, int lazy);

/* Whether the shim was tested with the SQLite version `version` (the form of
 * sqlite3_libversion_number(): 3040001 is 3.40.1). */
int qrl__walbuf_tested(int version);

/* Whether the store may use this VFS: qrl__walbuf_tested(sqlite3_libversion_number()), decided
 * on the first call. The first call that answers no says so on stderr; later calls are
 * silent. Thread-safe. */
int qrl__walbuf_usable(void);

#ifdef QRL_TEST_HOOKS
/* Tests: decide qrl__walbuf_usable() again, as if the library were `version` (0: the real
 * one); the next call that answers no says so on stderr again. */
void qrl__walbuf_test_version(int version);

/* Process-wide counts since start, over every WAL opened through this VFS: real writes (each a
 * pwrite of a whole buffer, or of one write too large to buffer) and real syncs of WAL files.
 * Either pointer may be NULL. */
void qrl__walbuf_stats(uint64_t *writes, uint64_t *syncs);
#endif

#endif
