/* SPDX-License-Identifier: MIT */
/*
 * Internal to the SQLite store (lib/store/sqlite/): what its files share.
 *
 * The SQLite store backend: the embedded default store, one database file in
 * WAL mode, implementing every function of qrl_store_methods (include/qrlogin/store.h).
 *
 * Why it looks the way it does: the store is where the login-request state machine becomes
 * atomic (lib/login_request.c) and where every credential lives, so each method is one atomic,
 * durable unit. A login request changes state only through one conditional UPDATE whose success
 * is judged by sqlite3_changes() == 1: that is the compare-and-set that gives exactly one winner
 * among any number of racing callers. Writes of more than one statement run inside
 * BEGIN IMMEDIATE, which takes the write lock up front; a deferred transaction that reads first
 * and upgrades later could fail with SQLITE_BUSY instead of waiting in the busy handler.
 *
 * Usage profile it is tuned for: one server process with a pool of worker threads, each
 * running many short operations. Reads dominate (token_lookup on every authenticated request,
 * lr_find on every poll and scan); writes are a few small rows each, and every write must be
 * durable when it returns (synchronous=FULL: an fsync of the WAL per commit). Hence:
 * - reads lease one of a few shared connections (READ_CONNS, opened lazily, SQLITE_OPEN_NOMUTEX)
 *   for the duration of one method: few enough that their page caches stay warm between the
 *   writer's commits ("reads" below), and in WAL mode readers never block each other or the
 *   writer;
 * - writes go to one writer thread that commits whatever is queued as one transaction: group
 *   commit, one fsync for a whole batch (see "group commit" below);
 * - every statement prepared once per connection (SQLITE_PREPARE_PERSISTENT) and kept in an
 *   array indexed by enum stmt_id;
 * - writes that need not survive a power loss (device_touch, lr_create, ratelimit_hit, sweep)
 *   commit without an fsync when no durable write shares their batch: they survive kill -9 and
 *   become power-safe with the next durable commit (a sync of the WAL covers all before it);
 * - connections use the walbuf VFS (../walbuf.c), which hands the WAL frames of a commit to the
 *   kernel as one write instead of two per frame. It needs synchronous=FULL on every connection,
 *   always, so the writer never switches to NORMAL: it asks walbuf to skip the fsync instead.
 *   Only with an SQLite version walbuf was tested with: with another, the connections use
 *   SQLite's own VFS, and the lazy commits above sync like durable ones.
 * The writer, the checkpointer and the opening thread have their own connections; a thread
 * that calls a write method runs it on the writer's. All stay open until close.
 *
 * Lifecycle: qrl_store_sqlite_open() -> methods from any thread -> st->m->close() once no thread
 * uses the handle any more. Close finalizes and closes every connection it opened.
 *
 * Where things are (this folder; each file opens with why it is shaped the way it is):
 * - store.c: the handle: open, close, the method table, and the write methods generated from
 *   QRL__SQLITE_WRITES below;
 * - schema.c: the migrations and PRAGMA user_version;
 * - statements.c: every SQL statement, the column lists and the row decoders, errors, the
 *   transaction helpers;
 * - connections.c: opening connections, the shared reading connections and read scopes;
 * - writer.c: the writer thread (group commit), the syncer and the checkpointer;
 * - user_codes.c: which login request each user code names, kept in memory;
 * - accounts.c, devices.c, tokens.c, login_requests.c, rate_limits.c (with the sweep),
 *   passkeys.c, notices.c, challenges.c: the bodies of the methods, one file per entity. A
 *   write body is named qrl__sqlite_<method>_w and runs on the writer's connection; a read
 *   body <method>_r runs under a lease (READ_METHOD).
 * Only this header is shared between them; no file includes another's code. Functions shared
 * across files carry the qrl__sqlite_ prefix; the short static inline helpers below are the
 * exception, being file-local copies in each file that includes this header.
 *
 * What to update when...
 * - the schema changes: append one SQL string to migrations[] (schema.c; never edit a released
 *   entry); open applies the missing entries in one transaction and sets PRAGMA user_version;
 * - a statement is added: one enum stmt_id entry (below) and its SQL in stmt_sql[]
 *   (statements.c);
 * - a record field is added: the *_COLS list, its read_*() function (statements.c) and the
 *   INSERT;
 * - a write method is added: one line of QRL__SQLITE_WRITES (below) and its _w body; a read
 *   method: its _r body, READ_METHOD, and its prototype below; both: the table in store.c.
 *
 * Backend failures are logged to stderr as "qrlogin: sqlite: <message>". SQLite's messages never
 * contain bound values, so no secret or hash can reach the log.
 */
#ifndef QRL_STORE_SQLITE_INTERNAL_H
#define QRL_STORE_SQLITE_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "qrlogin/store.h"

enum stmt_id {
    ST_BEGIN,
    ST_BEGIN_READ,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_ACCOUNT_INSERT,
    ST_ACCOUNT_GET,
    ST_ACCOUNT_BY_NAME,
    ST_ACCOUNT_SET_PW,
    ST_DEVICE_INSERT,
    ST_DEVICE_GET,
    ST_DEVICE_LIST,
    ST_DEVICE_TOUCH,
    ST_DEVICE_SET_REVOKED,
    ST_DEVICE_REVOKE_TOKENS,
    ST_TOKEN_INSERT,
    ST_TOKEN_LOOKUP,
    ST_TOKEN_AUTH,
    ST_TOKEN_SET_USED,
    ST_TOKEN_REVOKE,
    ST_LR_LIVE_CODES,
    ST_LR_INSERT,
    ST_LR_GET,
    ST_LR_TRANSITION,
    ST_LR_APPROVER,
    ST_LR_SET_DENIED,
    ST_LR_SET_REDEEMED,
    ST_LR_BY_DEVICE,
    ST_RL_HIT,
    ST_RL_PEEK,
    ST_RL_TAKE,
    ST_RL_GIVE,
    ST_SWEEP_LR,
    ST_SWEEP_LR_UNDECIDED,
    ST_SWEEP_RL,
    ST_DEVICE_SET_PUBKEY,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_PASSKEY_INSERT,
    ST_PASSKEY_LIST,
    ST_PASSKEY_GET,
    ST_PASSKEY_USE,
    ST_PASSKEY_EXISTS,
    ST_PASSKEY_DELETE,
    ST_NOTICE_INSERT,
    ST_NOTICE_PRUNE,
    ST_NOTICE_LIST,
    ST_NOTICE_GET,
    ST_NOTICE_EXISTS,
    ST_NOTICE_ACK,
    ST_CHAL_TRIM,
    ST_CHAL_INSERT,
    ST_CHAL_TAKE,
    ST_SWEEP_CHAL,
    ST_COUNT
};

/* One thread's connection. Used only by that thread; reached by others only in close. */
struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    int in_batch; /* the writer's connection, inside a group-commit transaction */
    struct conn *next;
    struct conn *rnext; /* in sqlite_store.rfree */
};

/* Which login request each user code names (see "user codes" below). An open-addressing table
 * with linear probing; entries are replaced in place and dropped only when the table is rebuilt.
 * code == 0 marks a free slot (a packed code is 8 letters, never 0). */
struct uc_slot {
    uint64_t code; /* the 8 letters of the canonical code, as bytes */
    int64_t id;
    int64_t expires_ms;
};

struct uc_map {
    pthread_mutex_t mu;
    int built;            /* loaded from the database (on first use) */
    struct uc_slot *slot; /* cap entries */
    size_t cap;           /* a power of two, or 0 before the first entry */
    unsigned shift;       /* 64 - log2(cap) */
    size_t used;          /* slots in use, expired or not */
    uint64_t mul;         /* random odd multiplier of the hash */
};

/* Most writes the writer takes into one transaction (writer.c). */
#define QRL__SQLITE_BATCH_MAX 1024

typedef struct sqlite_store {
    struct qrl_store base; /* first member: the handle is a qrl_store */
    char *path;
    pthread_key_t key; /* the calling thread's struct conn */
    pthread_mutex_t lock;
    struct conn *conns; /* every connection opened, guarded by lock */
    /* Group commit: every write runs on one writer thread, many per transaction. */
    pthread_t writer;
    int writer_started;
    pthread_mutex_t wmu;
    pthread_cond_t wwork;
    struct wop *whead, *wtail;
    int wstop;
    /* Pipelined durability (see "group commit"): the ops of durable batches, committed without
     * their fsync, wait here in commit order for the syncer's next fdatasync of the WAL. */
    pthread_t syncer;
    int syncer_started, sstop;
    pthread_cond_t sync_cv;
    struct wop *shead, *stail;
    int sync_fd;     /* the WAL file, opened by the writer for the syncer; -1: none */
    int sync_tried;  /* the writer tried to open it (writer thread only) */
    int sync_failed; /* an fdatasync failed: every later durable batch syncs in its commit */
    /* Checkpoints run on their own thread so that the writer never waits for one. */
    pthread_t ckpt;
    int ckpt_started, ckpt_due;
    int ckpt_mark; /* WAL frames when the checkpointer was last called (writer thread only) */
    pthread_cond_t ckpt_cv;
    /* Reading connections, shared by all threads (see "reads" below). */
    pthread_mutex_t rmu;
    pthread_cond_t rfree_cv;
    struct conn *rfree; /* idle reading connections, linked by rnext */
    int ropen;          /* reading connections opened */
    struct uc_map uc;   /* user codes of unexpired login requests */
    /* Change stamps of login requests (stamps.c): slots in a file every process on the
     * database maps; NULL when it could not be mapped (then no stamp ever repeats). */
    _Atomic uint64_t *stamps;
    /* Requests the writer's current batch changes, stamped once it has committed (writer
     * thread only); stamp_all when more than fit. */
    int64_t stamp_ids[QRL__SQLITE_BATCH_MAX];
    size_t nstamp;
    int stamp_all;
} sqlite_store;

/* One queued write: a function to run on the writer's connection, and its result. */
struct wop {
    qrl_err (*fn)(void *arg);
    void *arg;
    int durable; /* its commit must reach the disk before the caller hears of it */
    qrl_err rc;
    sem_t done; /* posted by the writer once the batch holding it is committed */
    struct wop *next;
};

/* --- small helpers (static inline: on the path of every method) ---------------------------- */

/* True when `s` is a NUL-terminated string that fits an array of `cap` bytes. */
static inline int str_fits(const char *s, size_t cap)
{
    return s != NULL && memchr(s, '\0', cap) != NULL;
}

/* Binding fails only on a programming error or out of memory. A failed bind would leave the
 * previous call's value in place, so every call site checks: the helpers keep the first error. */
static inline void bind_i64(sqlite3_stmt *s, int i, int64_t v, int *brc)
{
    int rc = sqlite3_bind_int64(s, i, v);
    if (*brc == SQLITE_OK)
        *brc = rc;
}

static inline void bind_text(sqlite3_stmt *s, int i, const char *v, int *brc)
{
    int rc = v != NULL ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
    if (*brc == SQLITE_OK)
        *brc = rc;
}

static inline void bind_hash(sqlite3_stmt *s, int i, const qrl_hash *h, int *brc)
{
    int rc = sqlite3_bind_blob(s, i, h->b, QRL_HASH_BYTES, SQLITE_STATIC);
    if (*brc == SQLITE_OK)
        *brc = rc;
}

/* Sizes handed to LIMIT: a size_t may exceed what SQLite's integers hold. */
static inline int64_t limit_of(size_t max)
{
    return max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
}

/* --- statements.c: errors, statements, transactions, row decoders -------------------------- */

void qrl__sqlite_log_db(sqlite3 *db, const char *what);
/* Maps an SQLite result code (extended codes are on) to a qrl_err, logging real failures. */
qrl_err qrl__sqlite_db_fail(struct conn *c, int rc, const char *what);
/* A value read back does not fit its record: someone else wrote the file, or it is damaged. */
qrl_err qrl__sqlite_bad_row(const char *what);
/* Open-time errors go to the caller's buffer, or to the log when there is none. */
void qrl__sqlite_set_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepares statement `id` on `c` (SQLITE_PREPARE_PERSISTENT) and stores it in c->stmt[id]. */
qrl_err qrl__sqlite_stmt_prepare(struct conn *c, enum stmt_id id, sqlite3_stmt **out);

/* Returns the cached statement `id`, preparing it on first use. The caller resets it after use
 * (sqlite3_reset), which also ends the read transaction a SELECT holds. */
static inline qrl_err stmt_get(struct conn *c, enum stmt_id id, sqlite3_stmt **out)
{
    if (c->stmt[id] == NULL)
        return qrl__sqlite_stmt_prepare(c, id, out);
    *out = c->stmt[id];
    return QRL_OK;
}

/* Runs a statement that returns no row to completion. Needs no bindings or has them set. */
qrl_err qrl__sqlite_stmt_run(struct conn *c, sqlite3_stmt *s, const char *what);
qrl_err qrl__sqlite_exec_id(struct conn *c, enum stmt_id id, const char *what);
/* Starts the atomic unit of one store function. On the writer's connection, inside a group
 * commit, that is a savepoint of the batch transaction; elsewhere a transaction of its own. */
qrl_err qrl__sqlite_tx_begin(struct conn *c);
/* Ends the unit: keeps it when `commit`, else undoes it. A failed COMMIT is rolled back too,
 * so the connection never stays inside a transaction. */
qrl_err qrl__sqlite_tx_end(struct conn *c, int commit);

/* The decoders of the *_COLS lists (statements.c); the _at forms start at column `b`. */
qrl_err qrl__sqlite_read_account_at(sqlite3_stmt *s, int b, qrl_account_rec *out);
qrl_err qrl__sqlite_read_account(sqlite3_stmt *s, qrl_account_rec *out);
qrl_err qrl__sqlite_read_device_at(sqlite3_stmt *s, int b, qrl_device_rec *out);
qrl_err qrl__sqlite_read_device(sqlite3_stmt *s, qrl_device_rec *out);
qrl_err qrl__sqlite_read_token(sqlite3_stmt *s, qrl_token_rec *out);
qrl_err qrl__sqlite_read_lr(sqlite3_stmt *s, qrl_lr_rec *out);
qrl_err qrl__sqlite_read_passkey(sqlite3_stmt *s, qrl_passkey_rec *out);
/* NOTICE_COLS: the notice's ten columns, then its device's DEVICE_COLS from this column. */
qrl_err qrl__sqlite_read_notice(sqlite3_stmt *s, qrl_notice_rec *out);
#define NOTICE_DEVICE_COL 10
/* ST_TOKEN_AUTH: TOKEN_COLS, then ACCOUNT_COLS at this column and DEVICE_COLS at the next. */
#define AUTH_ACCOUNT_COL 12
#define AUTH_DEVICE_COL 18

/* --- schema.c ------------------------------------------------------------------------------ */

/* Brings the schema of the file `c` has open to the version this program knows. */
qrl_err qrl__sqlite_schema_migrate(struct conn *c, const char *path, char *errbuf, size_t errlen);

/* --- connections.c: connections, the read pool, read scopes -------------------------------- */

/* Opens a connection and applies the per-connection settings. */
qrl_err qrl__sqlite_conn_open(const char *path, struct conn **out, char *errbuf, size_t errlen);
void qrl__sqlite_conn_close(struct conn *c);
/* The calling thread's connection, opened on its first call. */
qrl_err qrl__sqlite_conn_get(sqlite_store *s, struct conn **out);
/* The connection a method body uses: the thread's lease of a reading connection if it holds
 * one, else its own connection (the writer's, for write bodies). */
qrl_err qrl__sqlite_store_conn(qrl_store *st, struct conn **out);
qrl_err qrl__sqlite_lease_begin(qrl_store *st);
void qrl__sqlite_lease_end(qrl_store *st);
/* Marks the calling thread as the writer of `s`: it reads on its own connection. */
void qrl__sqlite_reads_on_writer(sqlite_store *s);
/* Ends the calling thread's read scope on `s`, if it has one: at store close, and before a
 * write of this thread waits, which ends its scope for good (store.h). */
void qrl__sqlite_scope_drop(sqlite_store *s);
qrl_err qrl__sqlite_read_begin(qrl_store *st);
void qrl__sqlite_read_end(qrl_store *st);

/* Defines the read method qrl__sqlite_<name> as its body name##_r run under a lease. */
#define READ_METHOD(name, params, args)                                                            \
    qrl_err qrl__sqlite_##name params                                                              \
    {                                                                                              \
        qrl_err rc = qrl__sqlite_lease_begin(st);                                                  \
        if (rc != QRL_OK)                                                                          \
            return rc;                                                                             \
        rc = name##_r args;                                                                        \
        qrl__sqlite_lease_end(st);                                                                 \
        return rc;                                                                                 \
    }

/* The read methods (the table in store.c). */
qrl_err qrl__sqlite_account_get(qrl_store *st, int64_t id, qrl_account_rec *out);
qrl_err qrl__sqlite_account_by_name(qrl_store *st, const char *username, qrl_account_rec *out);
qrl_err qrl__sqlite_device_get(qrl_store *st, int64_t id, qrl_device_rec *out);
qrl_err qrl__sqlite_device_list(qrl_store *st, int64_t account_id, qrl_device_rec *out, size_t max,
                                size_t *n);
qrl_err qrl__sqlite_token_lookup(qrl_store *st, const qrl_hash *h, qrl_token_rec *out);
qrl_err qrl__sqlite_token_auth(qrl_store *st, const qrl_hash *h, qrl_token_rec *tok,
                               qrl_account_rec *acc, qrl_device_rec *dev);
qrl_err qrl__sqlite_lr_get(qrl_store *st, int64_t id, qrl_lr_rec *out);
qrl_err qrl__sqlite_lr_find(qrl_store *st, qrl_lr_key kind, const void *key, int64_t now_ms,
                            qrl_lr_rec *out);
qrl_err qrl__sqlite_lr_by_device(qrl_store *st, int64_t device_id, int64_t *ids, size_t max,
                                 size_t *n);
qrl_err qrl__sqlite_ratelimit_peek(qrl_store *st, const char *key, int64_t now_ms,
                                   int64_t window_ms, int64_t *count);
qrl_err qrl__sqlite_passkey_list(qrl_store *st, int64_t account_id, qrl_passkey_rec *out,
                                 size_t max, size_t *n);
qrl_err qrl__sqlite_passkey_get(qrl_store *st, const unsigned char *cred_id, size_t cred_id_len,
                                qrl_passkey_rec *out);
qrl_err qrl__sqlite_notice_list(qrl_store *st, int64_t account_id, int64_t device_id,
                                int64_t since_ms, qrl_notice_rec *out, size_t max, size_t *n);
qrl_err qrl__sqlite_notice_get(qrl_store *st, int64_t account_id, int64_t id, qrl_notice_rec *out);

/* --- the write methods --------------------------------------------------------------------
 *
 * One line per write method of qrl_store_methods: its name, whether its commit must reach the
 * disk before the caller hears of it (DURABLE) or may skip the flush (LAZY: it survives kill -9
 * and becomes power-safe with the next durable commit; store.h lists which writes may), and
 * its parameters after the store handle, each as (type, name). From this one description
 * come the prototype of the hand-written body qrl__sqlite_<name>_w (below, so the compiler
 * holds every body to it) and, in store.c, the method itself: an args struct, a thunk that
 * unpacks it on the writer thread, and the function in the method table that queues it
 * (qrl__sqlite_submit). The durability is an expression over the parameters: DURABLE, LAZY
 * (both defined in store.c) or a computation (lr_transition).
 *
 * Why lazy where it is:
 * - lr_create: a new login request need not survive a power loss: the screen would get
 *   invalid_grant and show a new code. It does survive kill -9.
 * - lr_transition: a claim or an expiry decides nothing (store.h): lazy, like the request's
 *   creation; every other transition is durable.
 * - device_touch, ratelimit_hit (counting failures), sweep: need not survive a power loss; they
 *   do survive kill -9.
 * - notice_add, notice_ack: a notice of a new device lost to a power loss costs the warning on
 *   the other devices, a lost acknowledgement shows a notice once more; neither decides
 *   anything, and both survive kill -9. (notice_add runs right after the redemption that
 *   created the device, whose own commit is durable.)
 * - challenge_put: a WebAuthn challenge lost to a power loss makes the browser ask for another.
 * And passkey_use is durable: a counter that went back after a power loss would accept a
 * replayed assertion's counter once more (W3C WebAuthn Level 2 section 6.1.1); so is
 * challenge_take: a challenge that came back would let an assertion be verified twice. */
#define QRL__SQLITE_WRITES(X)                                                                      \
    X(account_create, DURABLE, (qrl_account_rec *, acc))                                           \
    X(account_set_password, DURABLE, (int64_t, id), (const char *, pw_hash))                       \
    X(device_create, DURABLE, (qrl_device_rec *, dev), (qrl_token_rec *, tok), (size_t, ntok))     \
    X(device_touch, LAZY, (int64_t, device_id), (int64_t, now_ms), (const char *, address))        \
    X(device_revoke, DURABLE, (int64_t, account_id), (int64_t, device_id), (int64_t, now_ms))      \
    X(device_set_pubkey, DURABLE, (int64_t, account_id), (int64_t, device_id),                     \
      (const unsigned char *, pubkey))                                                             \
    X(token_insert, DURABLE, (const qrl_token_rec *, tok))                                         \
    X(token_rotate, DURABLE, (const qrl_hash *, old), (int64_t, now_ms),                           \
      (qrl_token_rec *, new_tok), (size_t, n), (qrl_token_rec *, old_out))                         \
    X(token_revoke, DURABLE, (const qrl_hash *, h), (int64_t, now_ms))                             \
    X(lr_create, LAZY, (qrl_lr_rec *, lr))                                                         \
    X(lr_transition, lr_transition_durability(cas), (const qrl_lr_cas *, cas))                     \
    X(lr_redeem, DURABLE, (int64_t, id), (int64_t, now_ms), (qrl_device_rec *, dev),               \
      (qrl_token_rec *, tok), (size_t, ntok), (qrl_lr_state *, state_out))                         \
    X(lr_approve_redeem, DURABLE, (const qrl_lr_cas *, cas), (qrl_device_rec *, dev),              \
      (qrl_token_rec *, tok), (size_t, ntok))                                                      \
    X(ratelimit_hit, LAZY, (const char *, key), (int64_t, now_ms), (int64_t, window_ms),           \
      (int64_t *, count))                                                                          \
    X(sweep, LAZY, (int64_t, now_ms), (int64_t, keep_ms))                                          \
    X(passkey_add, DURABLE, (qrl_passkey_rec *, pk))                                               \
    X(passkey_use, DURABLE, (int64_t, id), (uint32_t, old_count), (uint32_t, new_count),           \
      (int64_t, now_ms))                                                                           \
    X(passkey_delete, DURABLE, (int64_t, account_id), (int64_t, id))                               \
    X(ratelimit_take, LAZY, (const char *, key), (int64_t, now_ms), (int64_t, window_ms),          \
      (int64_t, limit), (int64_t *, retry_ms))                                                     \
    X(ratelimit_give, LAZY, (const char *, key), (int64_t, now_ms), (int64_t, window_ms),          \
      (int64_t, limit))                                                                            \
    X(notice_add, LAZY, (const qrl_notice_rec *, n), (int64_t, older_than_ms))                     \
    X(notice_ack, LAZY, (int64_t, account_id), (int64_t, id), (int64_t, device_id),                \
      (int64_t, now_ms))                                                                           \
    X(challenge_put, LAZY, (const qrl_challenge_rec *, c), (int64_t, now_ms))                      \
    X(challenge_take, DURABLE, (const qrl_hash *, h), (int64_t, now_ms), (qrl_challenge_rec *, out))

/* QRL__SQLITE_EACH(m, (T1, n1), (T2, n2), ...) is m(T1, n1) m(T2, n2) ...: up to 7 pairs. */
#define QRL__SQLITE_CAT(a, b) QRL__SQLITE_CAT_(a, b)
#define QRL__SQLITE_CAT_(a, b) a##b
#define QRL__SQLITE_NARGS(...) QRL__SQLITE_NARGS_(__VA_ARGS__, 7, 6, 5, 4, 3, 2, 1, 0)
#define QRL__SQLITE_NARGS_(_1, _2, _3, _4, _5, _6, _7, n, ...) n
#define QRL__SQLITE_EACH(m, ...)                                                                   \
    QRL__SQLITE_CAT(QRL__SQLITE_EACH_, QRL__SQLITE_NARGS(__VA_ARGS__))(m, __VA_ARGS__)
#define QRL__SQLITE_EACH_1(m, p) m p
#define QRL__SQLITE_EACH_2(m, p, ...) m p QRL__SQLITE_EACH_1(m, __VA_ARGS__)
#define QRL__SQLITE_EACH_3(m, p, ...) m p QRL__SQLITE_EACH_2(m, __VA_ARGS__)
#define QRL__SQLITE_EACH_4(m, p, ...) m p QRL__SQLITE_EACH_3(m, __VA_ARGS__)
#define QRL__SQLITE_EACH_5(m, p, ...) m p QRL__SQLITE_EACH_4(m, __VA_ARGS__)
#define QRL__SQLITE_EACH_6(m, p, ...) m p QRL__SQLITE_EACH_5(m, __VA_ARGS__)
#define QRL__SQLITE_EACH_7(m, p, ...) m p QRL__SQLITE_EACH_6(m, __VA_ARGS__)

/* ", T n": one parameter of a generated signature, after `qrl_store *st`. */
#define QRL__SQLITE_PARAM(type, name) , type name

/* The prototypes of the write bodies, qrl__sqlite_<name>_w. */
#define QRL__SQLITE_BODY_DECL(name, durability, ...)                                               \
    qrl_err qrl__sqlite_##name##_w(qrl_store *st QRL__SQLITE_EACH(QRL__SQLITE_PARAM, __VA_ARGS__));
QRL__SQLITE_WRITES(QRL__SQLITE_BODY_DECL)
#undef QRL__SQLITE_BODY_DECL

/* --- writer.c: the writer thread, the syncer, the checkpointer ----------------------------- */

/* Starts the writer, the syncer and the checkpointer of a store whose opening connection is
 * ready. On failure nothing is left running and errbuf says why. */
/* --- stamps.c --- */
/* Maps the stamp file of the database at `path` (path + "-stamps"); on failure says why on
 * stderr and leaves s->stamps NULL. */
void qrl__sqlite_stamps_open(sqlite_store *s, const char *path);
void qrl__sqlite_stamps_close(sqlite_store *s);
/* The method lr_stamp. */
uint64_t qrl__sqlite_lr_stamp(qrl_store *st, int64_t id);
/* Writer thread: the running batch changes request `id`... */
void qrl__sqlite_stamp_later(qrl_store *st, int64_t id);
/* ...and has now ended (committed or rolled back): moves the stamps of those requests. */
void qrl__sqlite_stamps_bump(sqlite_store *s);

qrl_err qrl__sqlite_writer_start(sqlite_store *s, char *errbuf, size_t errlen);
/* Stops them once every queued write is committed and its caller woken (store close). */
void qrl__sqlite_writer_stop(sqlite_store *s);
/* Queues a write (fn(arg) on the writer's connection) and waits until its batch is committed,
 * and synced when `durable`. */
qrl_err qrl__sqlite_submit(qrl_store *st, qrl_err (*fn)(void *), void *arg, int durable);
/* The store's `health` method: the writer's commit statistics, and a probe of the write lock. */
qrl_err qrl__sqlite_health(qrl_store *st, int probe, qrl_store_health *out);

/* --- user_codes.c: which login request each user code names -------------------------------- */

int qrl__sqlite_uc_pack(const char *code, uint64_t *out);
struct uc_slot *qrl__sqlite_uc_find(struct uc_map *m, uint64_t code);
qrl_err qrl__sqlite_uc_reserve(struct uc_map *m, int64_t now_ms);
void qrl__sqlite_uc_place(struct uc_map *m, uint64_t code, int64_t id, int64_t expires_ms);
qrl_err qrl__sqlite_uc_load(struct uc_map *m, struct conn *c, int64_t now_ms);
int64_t qrl__sqlite_uc_lookup(sqlite_store *s, struct conn *c, const char *code, int64_t now_ms,
                              qrl_err *err);

/* --- devices.c and tokens.c: pieces shared with other entities, run inside the caller's
 * transaction ------------------------------------------------------------------------------- */

int qrl__sqlite_device_valid(const qrl_device_rec *dev);
int qrl__sqlite_tokens_valid(const qrl_token_rec *tok, size_t n);
qrl_err qrl__sqlite_insert_device(struct conn *c, const qrl_device_rec *dev, int64_t account_id,
                                  int64_t *id);
qrl_err qrl__sqlite_insert_tokens(struct conn *c, const qrl_token_rec *tok, size_t n,
                                  int64_t device_id);
/* Sets revoked_ms of an active device and of its tokens not revoked yet. */
qrl_err qrl__sqlite_revoke_device_tx(struct conn *c, int64_t device_id, int64_t now_ms);

#endif
