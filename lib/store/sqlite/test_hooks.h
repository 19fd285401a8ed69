/* SPDX-License-Identifier: MIT */
/*
 * Test hooks of the SQLite store (writer.c), compiled only with QRL_TEST_HOOKS: a release build
 * has none of them. Unit tests include this header (the test suite is always built with the
 * hooks).
 */
#ifndef QRL_STORE_SQLITE_TEST_HOOKS_H
#define QRL_STORE_SQLITE_TEST_HOOKS_H

#ifdef QRL_TEST_HOOKS

#include <stdint.h>

/* Process-wide count of the fdatasync calls of the WAL made by the stores' syncer threads since
 * start: a durable write is acknowledged only after one that started after its commit. */
uint64_t qrl__sqlite_wal_syncs(void);

/* Test holds: while `writer` is set, every store's writer takes no new batch; while `syncer`
 * is set, every syncer waits before its next fdatasync. 0, 0 lets both go on. */
void qrl__sqlite_test_hold(int writer, int syncer);

/* Writes queued since the writer was last held. */
int qrl__sqlite_test_held_queued(void);

#endif

#endif
