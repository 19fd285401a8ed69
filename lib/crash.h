/* SPDX-License-Identifier: MIT */
/*
 * Crash points (test builds only): named places in the decisive writes where a test can make
 * the server die by SIGKILL, to check that what was committed stands after a restart and what
 * was not committed can be retried (tests/integration/test_crash.c).
 *
 * The environment variable QRL_CRASH_AT names one point; it is read once, when the process
 * starts, and a name that is not in the list below stops the process there (exit status 1), so
 * that a misspelt point cannot make a test pass that never crashed. When execution reaches the
 * named point, the process writes "qrlogin: crash point NAME" to stderr and sends itself
 * SIGKILL: no handler, no atexit, no flush of anything buffered, like a power cut without the
 * loss of the OS page cache.
 *
 * Release builds (no QRL_TEST_HOOKS) contain no trace of this: QRL_CRASH_POINT() expands to
 * nothing, crash.c compiles to nothing, and neither the variable's name nor a point's name is
 * in the binary (the test repo/release_has_no_test_hooks checks with nm and strings).
 *
 * Adding a point: one line of QRL__CRASH_POINTS (an identifier, the name tests use, where it
 * is), QRL_CRASH_POINT(IDENTIFIER) at the place, and a case in test_crash.c.
 */
#ifndef QRLOGIN_LIB_CRASH_H
#define QRLOGIN_LIB_CRASH_H

#ifdef QRL_TEST_HOOKS

/* X(identifier, name, where). "before_submit": the decision is made, its write not yet queued
 * for the store; "committed": the store call returned success (committed and flushed), the
 * caller has not been answered. */
#define QRL__CRASH_POINTS(X)                                                                       \
    X(APPROVE_BEFORE_SUBMIT, "approve.before_submit", "approval checked, not written")             \
    X(APPROVE_COMMITTED, "approve.committed", "approval on disk, phone not answered")              \
    X(APPROVE_HANDOFF_COMMITTED, "approve.handoff_committed",                                      \
      "approval and redemption for a held screen on disk, neither answered")                       \
    X(DENY_BEFORE_SUBMIT, "deny.before_submit", "denial checked, not written")                     \
    X(DENY_COMMITTED, "deny.committed", "denial on disk, phone not answered")                      \
    X(REDEEM_BEFORE_SUBMIT, "redeem.before_submit", "tokens drawn, not written")                   \
    X(REDEEM_COMMITTED, "redeem.committed", "device and tokens on disk, screen not answered")      \
    X(ROTATE_BEFORE_SUBMIT, "rotate.before_submit", "new refresh pair drawn, not written")         \
    X(ROTATE_COMMITTED, "rotate.committed", "rotation on disk, client not answered")               \
    X(REVOKE_BEFORE_SUBMIT, "revoke.before_submit", "device revocation checked, not written")      \
    X(REVOKE_COMMITTED, "revoke.committed", "revocation on disk, phone not answered")              \
    X(SQLITE_BEFORE_COMMIT, "sqlite.before_commit",                                                \
      "a durable batch ran its writes, COMMIT not yet run")                                        \
    X(SQLITE_BEFORE_FDATASYNC, "sqlite.before_fdatasync",                                          \
      "a durable batch committed to the WAL (page cache), fdatasync not yet run")

enum qrl__crash_point {
#define QRL__CRASH_ENUM(id, name, where) QRL__CRASH_##id,
    QRL__CRASH_POINTS(QRL__CRASH_ENUM)
#undef QRL__CRASH_ENUM
        QRL__CRASH__COUNT
};

/* Dies by SIGKILL when QRL_CRASH_AT names `p`; returns at once otherwise. Thread-safe. */
void qrl__crash_point(enum qrl__crash_point p);

#define QRL_CRASH_POINT(id) qrl__crash_point(QRL__CRASH_##id)
/* The point, only when `cond` holds; release builds do not evaluate `cond`. */
#define QRL_CRASH_POINT_IF(cond, id)                                                               \
    do {                                                                                           \
        if (cond)                                                                                  \
            qrl__crash_point(QRL__CRASH_##id);                                                     \
    } while (0)

#else

#define QRL_CRASH_POINT(id) ((void)0)
#define QRL_CRASH_POINT_IF(cond, id) ((void)0)

#endif

#endif
