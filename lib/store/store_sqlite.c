/* SPDX-License-Identifier: MIT */
/*
 * SQLite store backend: the embedded default store, one database file in
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
 * - connections use the walbuf VFS (walbuf.c), which hands the WAL frames of a commit to the
 *   kernel as one write instead of two per frame. It needs synchronous=FULL on every connection,
 *   always, so the writer never switches to NORMAL: it asks walbuf to skip the fsync instead.
 * The writer, the checkpointer and the opening thread have their own connections; a thread
 * that calls a write method runs it on the writer's. All stay open until close.
 *
 * Lifecycle: qrl_store_sqlite_open() -> methods from any thread -> st->m->close() once no thread
 * uses the handle any more. Close finalizes and closes every connection it opened.
 *
 * What to update when...
 * - the schema changes: append one SQL string to migrations[] (never edit a released entry);
 *   open applies the missing entries in one transaction and sets PRAGMA user_version;
 * - a statement is added: one enum stmt_id entry and its SQL in stmt_sql[];
 * - a record field is added: the *_COLS list, its read_*() function and the INSERT.
 *
 * Backend failures are logged to stderr as "qrlogin: sqlite: <message>". SQLite's messages never
 * contain bound values, so no secret or hash can reach the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "qrlogin/fiber.h"
#include "qrlogin/store.h"
#include "store_sqlite_diag.h"
#include "walbuf.h"

/* A writer waits this long for the write lock before giving up with QRL_ERR_STORE. Commits take
 * milliseconds, so 10 s only runs out when something is badly stuck. */
#define BUSY_TIMEOUT_MS 10000
/* Rate-limit keys are built by the core from a prefix and a username or an address
 * ("pw:user:<64>", "uc:addr:<63>"); 256 is several times that and rejects garbage. */
#define RATELIMIT_KEY_MAX 256

/* States are stored as numbers and appear as literals in the SQL below. */
_Static_assert(QRL_LR_PENDING == 0 && QRL_LR_SCANNED == 1 && QRL_LR_APPROVED == 2 &&
                   QRL_LR_REDEEMED == 3 && QRL_LR_DENIED == 4 && QRL_LR_EXPIRED == 5,
               "login request states are stored as numbers used in the SQL");

/* Schema migrations: entry i brings the schema from user_version i to i + 1. */
static const char *const migrations[] = {
    /* Version 1: the initial schema. Hashes are 32-byte BLOBs, times INTEGER milliseconds,
     * "0" means "none" for optional ids and times (it is what the records use). */
    "CREATE TABLE accounts ("
    " id INTEGER PRIMARY KEY,"
    " username TEXT NOT NULL UNIQUE,"
    " display_name TEXT NOT NULL,"
    " pw_hash TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " disabled INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE devices ("
    " id INTEGER PRIMARY KEY,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " name TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " address TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " last_seen_ms INTEGER NOT NULL,"
    " revoked_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX devices_account ON devices(account_id);"
    /* Looked up only by hash: WITHOUT ROWID makes the primary key the table itself. */
    "CREATE TABLE tokens ("
    " hash BLOB PRIMARY KEY CHECK (length(hash) = 32),"
    " kind INTEGER NOT NULL,"
    " device_id INTEGER NOT NULL REFERENCES devices(id),"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " used_ms INTEGER NOT NULL DEFAULT 0,"
    " revoked_ms INTEGER NOT NULL DEFAULT 0,"
    " client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX tokens_device ON tokens(device_id);"
    "CREATE TABLE login_requests ("
    " id INTEGER PRIMARY KEY,"
    " device_code_hash BLOB NOT NULL UNIQUE CHECK (length(device_code_hash) = 32),"
    " scan_hash BLOB NOT NULL UNIQUE CHECK (length(scan_hash) = 32),"
    " user_code TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " device_name TEXT NOT NULL,"
    " device_kind TEXT NOT NULL,"
    " address TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " interval_s INTEGER NOT NULL,"
    " state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 5),"
    " updated_ms INTEGER NOT NULL,"
    " claimed_device_id INTEGER NOT NULL DEFAULT 0,"
    " account_id INTEGER NOT NULL DEFAULT 0,"
    " approving_device_id INTEGER NOT NULL DEFAULT 0,"
    " redeemed_device_id INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX login_requests_user_code ON login_requests(user_code, expires_ms);"
    "CREATE TABLE rate_limits ("
    " key TEXT PRIMARY KEY,"
    " start_ms INTEGER NOT NULL,"
    " window_ms INTEGER NOT NULL,"
    " hits INTEGER NOT NULL) WITHOUT ROWID;",
    /* Version 2: phone device keys and the approval nonce a phone signs. */
    "ALTER TABLE devices ADD COLUMN pubkey BLOB;"
    "ALTER TABLE login_requests ADD COLUMN nonce TEXT NOT NULL DEFAULT '';",
    /* Version 3: device codes and scan secrets carry the request id (store.h,
     * qrl_lr_secret_key), so their hashes need no unique index: each was a random-keyed index
     * leaf written per new request. SQLite drops a UNIQUE constraint only by rebuilding the
     * table. Requests made before carry no id in their codes and can no longer be found; they
     * expire as usual (minutes) and the screens ask for new ones. */
    "CREATE TABLE login_requests_v3 ("
    " id INTEGER PRIMARY KEY,"
    " device_code_hash BLOB NOT NULL CHECK (length(device_code_hash) = 32),"
    " scan_hash BLOB NOT NULL CHECK (length(scan_hash) = 32),"
    " user_code TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " device_name TEXT NOT NULL,"
    " device_kind TEXT NOT NULL,"
    " address TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " interval_s INTEGER NOT NULL,"
    " state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 5),"
    " updated_ms INTEGER NOT NULL,"
    " claimed_device_id INTEGER NOT NULL DEFAULT 0,"
    " account_id INTEGER NOT NULL DEFAULT 0,"
    " approving_device_id INTEGER NOT NULL DEFAULT 0,"
    " redeemed_device_id INTEGER NOT NULL DEFAULT 0,"
    " nonce TEXT NOT NULL DEFAULT '');"
    "INSERT INTO login_requests_v3 SELECT id, device_code_hash, scan_hash, user_code, client_id,"
    " scope, device_name, device_kind, address, created_ms, expires_ms, interval_s, state,"
    " updated_ms, claimed_device_id, account_id, approving_device_id, redeemed_device_id, nonce"
    " FROM login_requests;"
    "DROP TABLE login_requests;"
    "ALTER TABLE login_requests_v3 RENAME TO login_requests;"
    "CREATE INDEX login_requests_user_code ON login_requests(user_code, expires_ms);",
    /* Version 4: which request a user code names is kept in memory (see "user codes"): the
     * index was the last random-keyed one, a leaf written per new request. */
    "DROP INDEX IF EXISTS login_requests_user_code;",
    /* Version 5: passkeys (store.h, qrl_passkey_rec). A credential id names one credential
     * wherever it is registered, hence the unique index; assertions look passkeys up by it. */
    "CREATE TABLE passkeys ("
    " id INTEGER PRIMARY KEY,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " cred_id BLOB NOT NULL CHECK (length(cred_id) BETWEEN 1 AND 255),"
    " alg INTEGER NOT NULL,"
    " pubkey BLOB NOT NULL CHECK (length(pubkey) BETWEEN 1 AND 259),"
    " sign_count INTEGER NOT NULL DEFAULT 0,"
    " name TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " last_used_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX passkeys_cred_id ON passkeys(cred_id);"
    "CREATE INDEX passkeys_account ON passkeys(account_id);",
    /* Version 6: the screen's platform ("Samsung Tizen", "Chrome on Linux") next to its name
     * and kind, shown on the approval page. Requests made before have none. */
    "ALTER TABLE login_requests ADD COLUMN device_platform TEXT NOT NULL DEFAULT '';",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* Column lists shared by the SELECTs and the read_*() functions that decode them. */
#define ACCOUNT_COLS "id, username, display_name, pw_hash, created_ms, disabled"
#define DEVICE_COLS                                                                                \
    "id, account_id, name, kind, address, created_ms, last_seen_ms, revoked_ms, pubkey"
#define TOKEN_COLS                                                                                 \
    "t.hash, t.kind, t.device_id, t.created_ms, t.expires_ms, t.used_ms, t.revoked_ms, "           \
    "t.client_id, t.scope, d.account_id, d.revoked_ms != 0, a.disabled != 0"
#define LR_COLS                                                                                    \
    "id, device_code_hash, scan_hash, user_code, client_id, scope, device_name, device_kind, "     \
    "address, created_ms, expires_ms, interval_s, state, updated_ms, claimed_device_id, "          \
    "account_id, approving_device_id, redeemed_device_id, nonce, device_platform"
#define PASSKEY_COLS                                                                               \
    "id, account_id, cred_id, alg, pubkey, sign_count, name, created_ms, last_used_ms"

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
    ST_SWEEP_LR,
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
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN", /* a read scope's: its first read takes the snapshot */
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",

    [ST_ACCOUNT_INSERT] = "INSERT INTO accounts (username, display_name, pw_hash, created_ms,"
                          " disabled) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_ACCOUNT_GET] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = ?1",
    [ST_ACCOUNT_BY_NAME] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE username = ?1",
    [ST_ACCOUNT_SET_PW] = "UPDATE accounts SET pw_hash = ?2 WHERE id = ?1",

    [ST_DEVICE_INSERT] = "INSERT INTO devices (account_id, name, kind, address, created_ms,"
                         " last_seen_ms, revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0)",
    [ST_DEVICE_GET] = "SELECT " DEVICE_COLS " FROM devices WHERE id = ?1",
    [ST_DEVICE_LIST] = "SELECT " DEVICE_COLS " FROM devices WHERE account_id = ?1"
                       " AND revoked_ms = 0 ORDER BY created_ms, id LIMIT ?2",
    [ST_DEVICE_TOUCH] = "UPDATE devices SET last_seen_ms = ?2, address = coalesce(?3, address)"
                        " WHERE id = ?1 AND revoked_ms = 0",
    [ST_DEVICE_SET_REVOKED] = "UPDATE devices SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms = 0",
    [ST_DEVICE_REVOKE_TOKENS] = "UPDATE tokens SET revoked_ms = ?2"
                                " WHERE device_id = ?1 AND revoked_ms = 0",

    [ST_TOKEN_INSERT] = "INSERT INTO tokens (hash, kind, device_id, created_ms, expires_ms,"
                        " used_ms, revoked_ms, client_id, scope)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_TOKEN_LOOKUP] = "SELECT " TOKEN_COLS " FROM tokens t JOIN devices d ON d.id = t.device_id"
                        " JOIN accounts a ON a.id = d.account_id WHERE t.hash = ?1",
    /* TOKEN_COLS (12 columns), then ACCOUNT_COLS at column 12 and DEVICE_COLS at 18. */
    [ST_TOKEN_AUTH] = "SELECT " TOKEN_COLS ", a.id, a.username, a.display_name, a.pw_hash,"
                      " a.created_ms, a.disabled, d.id, d.account_id, d.name, d.kind, d.address,"
                      " d.created_ms, d.last_seen_ms, d.revoked_ms, d.pubkey FROM tokens t"
                      " JOIN devices d ON d.id = t.device_id JOIN accounts a ON a.id = d.account_id"
                      " WHERE t.hash = ?1",
    [ST_TOKEN_SET_USED] = "UPDATE tokens SET used_ms = ?2 WHERE hash = ?1 AND used_ms = 0",
    /* Rewrites an already set revoked_ms with itself, so that changes() tells existence. */
    [ST_TOKEN_REVOKE] = "UPDATE tokens SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ?2"
                        " ELSE revoked_ms END WHERE hash = ?1",

    /* Two ranges of the primary key, each in id order: ids below ?1 (counted, from before
     * version 3, or chosen by tests), and ids from ?2 on (drawn from the clock since then). */
    [ST_LR_LIVE_CODES] = "SELECT id, user_code, expires_ms FROM login_requests"
                         " WHERE id < ?1 AND expires_ms > ?3 UNION ALL"
                         " SELECT id, user_code, expires_ms FROM login_requests"
                         " WHERE id >= ?2 AND expires_ms > ?3",
    [ST_LR_INSERT] = "INSERT INTO login_requests (device_code_hash, scan_hash, user_code,"
                     " client_id, scope, device_name, device_kind, address, created_ms,"
                     " expires_ms, interval_s, state, updated_ms, claimed_device_id, account_id,"
                     " approving_device_id, redeemed_device_id, id, device_platform) VALUES"
                     " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
                     " ?17, ?18, ?19)",
    [ST_LR_GET] = "SELECT " LR_COLS " FROM login_requests WHERE id = ?1",
    /* The compare-and-set of store.h's lr_transition; ?4 is the from_mask. */
    [ST_LR_TRANSITION] =
        "UPDATE login_requests SET state = ?2, updated_ms = ?3,"
        " claimed_device_id = CASE WHEN ?5 != 0 THEN ?5 ELSE claimed_device_id END,"
        " account_id = CASE WHEN ?6 != 0 THEN ?6 ELSE account_id END,"
        " approving_device_id = CASE WHEN ?7 != 0 THEN ?7 ELSE approving_device_id END,"
        " nonce = coalesce(?9, nonce)"
        " WHERE id = ?1 AND ((?4 >> state) & 1) = 1"
        " AND CASE WHEN ?2 = 5 THEN expires_ms <= ?3 ELSE expires_ms > ?3 END"
        " AND (?8 = 0 OR claimed_device_id = ?8) AND (?10 IS NULL OR nonce = ?10)",
    /* NULL columns mean the account, or a device of that account, does not exist. */
    [ST_LR_APPROVER] = "SELECT (SELECT disabled FROM accounts WHERE id = ?1),"
                       " (SELECT revoked_ms FROM devices WHERE id = ?2 AND account_id = ?1)",
    [ST_LR_SET_DENIED] = "UPDATE login_requests SET state = 4, updated_ms = ?2"
                         " WHERE id = ?1 AND state = 2",
    [ST_LR_SET_REDEEMED] = "UPDATE login_requests SET state = 3, updated_ms = ?2,"
                           " redeemed_device_id = ?3 WHERE id = ?1 AND state = 2",
    [ST_LR_BY_DEVICE] = "SELECT id FROM login_requests WHERE state IN (1, 2)"
                        " AND (claimed_device_id = ?1 OR approving_device_id = ?1)"
                        " ORDER BY id LIMIT ?2",

    /* One statement, so the read-modify-write of a counter cannot interleave. In DO UPDATE the
     * bare column names are the row's values before the update. */
    [ST_RL_HIT] = "INSERT INTO rate_limits (key, start_ms, window_ms, hits) VALUES (?1, ?2, ?3, 1)"
                  " ON CONFLICT (key) DO UPDATE SET"
                  " hits = CASE WHEN ?2 < start_ms + ?3 THEN hits + 1 ELSE 1 END,"
                  " start_ms = CASE WHEN ?2 < start_ms + ?3 THEN start_ms ELSE ?2 END,"
                  " window_ms = ?3 RETURNING hits",
    [ST_RL_PEEK] = "SELECT hits, start_ms FROM rate_limits WHERE key = ?1",
    /* ?3 bounds the primary key (sweep_w): a range, not a scan of the whole table. */
    [ST_SWEEP_LR] = "DELETE FROM login_requests WHERE id < ?3 AND expires_ms < ?1 - ?2",
    [ST_SWEEP_RL] = "DELETE FROM rate_limits WHERE start_ms + window_ms < ?1 - ?2",
    [ST_SAVEPOINT] = "SAVEPOINT op",
    [ST_RELEASE] = "RELEASE op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO op",
    [ST_DEVICE_SET_PUBKEY] = "UPDATE devices SET pubkey = ?3 WHERE id = ?1 AND account_id = ?2"
                             " AND revoked_ms = 0",
    [ST_PASSKEY_INSERT] = "INSERT INTO passkeys (account_id, cred_id, alg, pubkey, sign_count,"
                          " name, created_ms, last_used_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
    [ST_PASSKEY_LIST] = "SELECT " PASSKEY_COLS " FROM passkeys WHERE account_id = ?1"
                        " ORDER BY created_ms, id LIMIT ?2",
    [ST_PASSKEY_GET] = "SELECT " PASSKEY_COLS " FROM passkeys WHERE cred_id = ?1",
    /* The compare-and-set of store.h's passkey_use. */
    [ST_PASSKEY_USE] = "UPDATE passkeys SET sign_count = ?3, last_used_ms = ?4"
                       " WHERE id = ?1 AND sign_count = ?2",
    [ST_PASSKEY_EXISTS] = "SELECT 1 FROM passkeys WHERE id = ?1",
    [ST_PASSKEY_DELETE] = "DELETE FROM passkeys WHERE id = ?1 AND account_id = ?2",
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
} sqlite_store;

/* One queued write: a function to run on the writer's connection, and its result. */
struct wop {
    qrl_err (*fn)(void *arg);
    void *arg;
    int durable; /* its commit must reach the disk before the caller hears of it */
    qrl_err rc;
    sem_t done;       /* posted by the writer once the batch holding it is committed */
    qrl_fiber *fiber; /* or, for a caller on a fiber: woken instead (no semaphore) */
    struct wop *next;
};

/* --- small helpers ------------------------------------------------------------------------ */

/* True when `s` is a NUL-terminated string that fits an array of `cap` bytes. */
static int str_fits(const char *s, size_t cap)
{
    return s != NULL && memchr(s, '\0', cap) != NULL;
}

static void log_db(sqlite3 *db, const char *what)
{
    fprintf(stderr, "qrlogin: sqlite: %s: %s\n", what,
            db != NULL ? sqlite3_errmsg(db) : "out of memory");
}

/* Maps an SQLite result code (extended codes are on) to a qrl_err, logging real failures. */
static qrl_err db_fail(struct conn *c, int rc, const char *what)
{
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return QRL_ERR_EXISTS;
    log_db(c->db, what);
    return (rc & 0xff) == SQLITE_NOMEM ? QRL_ERR_NOMEM : QRL_ERR_STORE;
}

/* A value read back does not fit its record: someone else wrote the file, or it is damaged. */
static qrl_err bad_row(const char *what)
{
    fprintf(stderr, "qrlogin: sqlite: %s: unexpected value in database\n", what);
    return QRL_ERR_STORE;
}

static void set_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Open-time errors go to the caller's buffer, or to the log when there is none. */
static void set_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (errbuf != NULL && errlen > 0)
        snprintf(errbuf, errlen, "sqlite: %s", msg);
    else
        fprintf(stderr, "qrlogin: sqlite: %s\n", msg);
}

/* Binding fails only on a programming error or out of memory. A failed bind would leave the
 * previous call's value in place, so every call site checks: the helpers keep the first error. */
static void bind_i64(sqlite3_stmt *s, int i, int64_t v, int *brc)
{
    int rc = sqlite3_bind_int64(s, i, v);
    if (*brc == SQLITE_OK)
        *brc = rc;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v, int *brc)
{
    int rc = v != NULL ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
    if (*brc == SQLITE_OK)
        *brc = rc;
}

static void bind_hash(sqlite3_stmt *s, int i, const qrl_hash *h, int *brc)
{
    int rc = sqlite3_bind_blob(s, i, h->b, QRL_HASH_BYTES, SQLITE_STATIC);
    if (*brc == SQLITE_OK)
        *brc = rc;
}

/* Sizes handed to LIMIT: a size_t may exceed what SQLite's integers hold. */
static int64_t limit_of(size_t max)
{
    return max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
}

/* Copies a TEXT column into a fixed array; never truncates (-1 when it does not fit). */
static int col_text(sqlite3_stmt *s, int col, char *dst, size_t cap)
{
    const unsigned char *p = sqlite3_column_text(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);

    if (p == NULL || n >= cap)
        return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

static int col_hash(sqlite3_stmt *s, int col, qrl_hash *h)
{
    const void *p = sqlite3_column_blob(s, col);

    if (p == NULL || sqlite3_column_bytes(s, col) != QRL_HASH_BYTES)
        return -1;
    memcpy(h->b, p, QRL_HASH_BYTES);
    return 0;
}

/* --- row decoders (column order: the *_COLS lists) ------------------------------------------ */

/* The readers decode ACCOUNT_COLS / DEVICE_COLS starting at column `b`. */
static qrl_err read_account_at(sqlite3_stmt *s, int b, qrl_account_rec *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, b);
    if (col_text(s, b + 1, out->username, sizeof out->username) != 0 ||
        col_text(s, b + 2, out->display_name, sizeof out->display_name) != 0 ||
        col_text(s, b + 3, out->pw_hash, sizeof out->pw_hash) != 0)
        return bad_row("account");
    out->created_ms = sqlite3_column_int64(s, b + 4);
    out->disabled = sqlite3_column_int(s, b + 5) != 0;
    return QRL_OK;
}

static qrl_err read_account(sqlite3_stmt *s, qrl_account_rec *out)
{
    return read_account_at(s, 0, out);
}

static qrl_err read_device_at(sqlite3_stmt *s, int b, qrl_device_rec *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, b);
    out->account_id = sqlite3_column_int64(s, b + 1);
    if (col_text(s, b + 2, out->name, sizeof out->name) != 0 ||
        col_text(s, b + 3, out->kind, sizeof out->kind) != 0 ||
        col_text(s, b + 4, out->address, sizeof out->address) != 0)
        return bad_row("device");
    out->created_ms = sqlite3_column_int64(s, b + 5);
    out->last_seen_ms = sqlite3_column_int64(s, b + 6);
    out->revoked_ms = sqlite3_column_int64(s, b + 7);
    if (sqlite3_column_type(s, b + 8) == SQLITE_BLOB) {
        if (sqlite3_column_bytes(s, b + 8) != QRL_PUBKEY_BYTES)
            return bad_row("device");
        memcpy(out->pubkey, sqlite3_column_blob(s, b + 8), QRL_PUBKEY_BYTES);
        out->has_pubkey = 1;
    }
    return QRL_OK;
}

static qrl_err read_device(sqlite3_stmt *s, qrl_device_rec *out)
{
    return read_device_at(s, 0, out);
}

static qrl_err read_token(sqlite3_stmt *s, qrl_token_rec *out)
{
    int kind;

    memset(out, 0, sizeof *out);
    kind = sqlite3_column_int(s, 1);
    if (col_hash(s, 0, &out->hash) != 0 || kind < QRL_TOKEN_ACCESS || kind > QRL_TOKEN_SESSION ||
        col_text(s, 7, out->client_id, sizeof out->client_id) != 0 ||
        col_text(s, 8, out->scope, sizeof out->scope) != 0)
        return bad_row("token");
    out->kind = (qrl_token_kind)kind;
    out->device_id = sqlite3_column_int64(s, 2);
    out->created_ms = sqlite3_column_int64(s, 3);
    out->expires_ms = sqlite3_column_int64(s, 4);
    out->used_ms = sqlite3_column_int64(s, 5);
    out->revoked_ms = sqlite3_column_int64(s, 6);
    out->account_id = sqlite3_column_int64(s, 9);
    out->device_revoked = sqlite3_column_int(s, 10);
    out->account_disabled = sqlite3_column_int(s, 11);
    return QRL_OK;
}

static qrl_err read_lr(sqlite3_stmt *s, qrl_lr_rec *out)
{
    int state;

    memset(out, 0, sizeof *out);
    state = sqlite3_column_int(s, 12);
    if (col_hash(s, 1, &out->device_code_hash) != 0 || col_hash(s, 2, &out->scan_hash) != 0 ||
        col_text(s, 3, out->user_code, sizeof out->user_code) != 0 ||
        col_text(s, 4, out->client_id, sizeof out->client_id) != 0 ||
        col_text(s, 5, out->scope, sizeof out->scope) != 0 ||
        col_text(s, 6, out->device_name, sizeof out->device_name) != 0 ||
        col_text(s, 7, out->device_kind, sizeof out->device_kind) != 0 ||
        col_text(s, 8, out->address, sizeof out->address) != 0 || state < QRL_LR_PENDING ||
        state > QRL_LR_EXPIRED)
        return bad_row("login request");
    out->id = sqlite3_column_int64(s, 0);
    out->created_ms = sqlite3_column_int64(s, 9);
    out->expires_ms = sqlite3_column_int64(s, 10);
    out->interval_s = sqlite3_column_int(s, 11);
    out->state = (qrl_lr_state)state;
    out->updated_ms = sqlite3_column_int64(s, 13);
    out->claimed_device_id = sqlite3_column_int64(s, 14);
    out->account_id = sqlite3_column_int64(s, 15);
    out->approving_device_id = sqlite3_column_int64(s, 16);
    out->redeemed_device_id = sqlite3_column_int64(s, 17);
    if (col_text(s, 18, out->nonce, sizeof out->nonce) != 0 ||
        col_text(s, 19, out->device_platform, sizeof out->device_platform) != 0)
        return bad_row("login request");
    return QRL_OK;
}

/* --- connections and statements ------------------------------------------------------------ */

/* Returns the cached statement `id`, preparing it on first use. The caller resets it after use
 * (sqlite3_reset), which also ends the read transaction a SELECT holds. */
static qrl_err stmt_get(struct conn *c, enum stmt_id id, sqlite3_stmt **out)
{
    if (c->stmt[id] == NULL) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmt[id], NULL);
        if (rc != SQLITE_OK)
            return db_fail(c, rc, "prepare");
    }
    *out = c->stmt[id];
    return QRL_OK;
}

/* Runs a statement that returns no row to completion. Needs no bindings or has them set. */
static qrl_err stmt_run(struct conn *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE ? QRL_OK : db_fail(c, rc, what);
}

static qrl_err exec_id(struct conn *c, enum stmt_id id, const char *what)
{
    sqlite3_stmt *s = NULL;
    qrl_err rc = stmt_get(c, id, &s);

    return rc != QRL_OK ? rc : stmt_run(c, s, what);
}

/* Starts the atomic unit of one store function. On the writer's connection, inside a group
 * commit, that is a savepoint of the batch transaction; elsewhere a transaction of its own. */
static qrl_err tx_begin(struct conn *c)
{
    return exec_id(c, c->in_batch ? ST_SAVEPOINT : ST_BEGIN, "begin");
}

/* Ends the unit: keeps it when `commit`, else undoes it. A failed COMMIT is rolled back too,
 * so the connection never stays inside a transaction. */
static qrl_err tx_end(struct conn *c, int commit)
{
    qrl_err rc = QRL_OK;

    if (c->in_batch) {
        if (!commit && (rc = exec_id(c, ST_ROLLBACK_TO, "rollback to")) != QRL_OK)
            return rc;
        return exec_id(c, ST_RELEASE, "release");
    }
    if (commit)
        rc = exec_id(c, ST_COMMIT, "commit");
    /* SQLite may already have rolled back by itself after some errors (e.g. SQLITE_FULL). */
    if ((!commit || rc != QRL_OK) && !sqlite3_get_autocommit(c->db))
        (void)exec_id(c, ST_ROLLBACK, "rollback");
    return rc;
}

static void conn_close(struct conn *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    if (sqlite3_close(c->db) != SQLITE_OK)
        log_db(c->db, "close");
    free(c);
}

/* Opens a connection and applies the per-connection settings. */
static qrl_err conn_open(const char *path, struct conn **out, char *errbuf, size_t errlen)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    const unsigned char *mode;
    int src;
    qrl_err rc = QRL_ERR_STORE;

    c = calloc(1, sizeof *c);
    if (c == NULL)
        return QRL_ERR_NOMEM;
    src = sqlite3_open_v2(path, &c->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                          QRL__WALBUF_VFS);
    if (src != SQLITE_OK) {
        set_errbuf(errbuf, errlen, "cannot open %s: %s", path,
                   c->db != NULL ? sqlite3_errmsg(c->db) : "out of memory");
        goto out;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    /* page_size applies to a new file only. Small pages: each login request touches three
     * random-keyed index leaves, and every touched page is written whole to the WAL, so 1 KiB
     * pages write a quarter of what 4 KiB pages do. journal_size_limit truncates a WAL that a
     * burst made large once it restarts. (mmap_size was tried for the readers and dropped: each
     * of the worker connections remaps the growing file, and mapped file pages count against
     * every held request's share of the resident memory.) synchronous=FULL is also what makes
     * walbuf correct (walbuf.h): never lower it on a connection of this store. */
    if (sqlite3_exec(c->db,
                     "PRAGMA page_size=1024; PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;"
                     " PRAGMA journal_size_limit=67108864",
                     NULL, NULL, NULL) != SQLITE_OK) {
        set_errbuf(errbuf, errlen, "%s: %s", path, sqlite3_errmsg(c->db));
        goto out;
    }
    /* Setting WAL on a database already in WAL mode is a cheap no-op; the answer tells whether
     * the mode is in effect (a file system without shared memory refuses it). */
    src = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    mode = src == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
    if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
        set_errbuf(errbuf, errlen, "%s: cannot enable WAL journal mode: %s", path,
                   src == SQLITE_ROW ? "refused" : sqlite3_errmsg(c->db));
        goto out;
    }
    rc = QRL_OK;
out:
    sqlite3_finalize(s);
    if (rc != QRL_OK) {
        conn_close(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

/* The calling thread's connection, opened on its first call. */
static qrl_err conn_get(sqlite_store *s, struct conn **out)
{
    struct conn *c = pthread_getspecific(s->key);
    qrl_err rc;

    if (c == NULL) {
        rc = conn_open(s->path, &c, NULL, 0);
        if (rc != QRL_OK)
            return rc;
        if (pthread_setspecific(s->key, c) != 0) {
            conn_close(c);
            return QRL_ERR_NOMEM;
        }
        pthread_mutex_lock(&s->lock);
        c->next = s->conns;
        s->conns = c;
        pthread_mutex_unlock(&s->lock);
    }
    *out = c;
    return QRL_OK;
}

/* --- reads ---------------------------------------------------------------------------------
 *
 * Reads run on a few connections shared by every thread, not on one per thread. In WAL mode a
 * connection empties its page cache whenever another connection has committed since its last
 * read, and the group-commit writer commits hundreds of times a second: with one connection per
 * worker thread (64 by default) nearly every read started from an empty cache and read each
 * b-tree page of its lookup again with a pread (58 per full flow, measured). A few connections
 * that serve every thread stay warm between commits. A read method leases one for its duration
 * (READ_METHOD below); store_conn() then returns the lease. The writer thread never leases: its
 * reads must see the batch it is writing. */

/* Enough that a worker rarely waits for a free connection on the machines we target (reads
 * are short and do not block), few enough that each stays warm. */
#define READ_CONNS 4

/* Set on the writer thread of a store. */
static _Thread_local sqlite_store *writer_of;

static _Thread_local struct {
    sqlite_store *s;
    struct conn *c;
    int depth;
} lease;

/* The calling thread's read scope (store.h, read_begin). Its first read leases a connection as
 * any read does, and opens a read transaction on it (BEGIN) that keeps the lease until the
 * scope ends: the request's later reads then share the snapshot, the WAL read lock and the page
 * cache of the first instead of taking and dropping each (four fcntl calls and a cache check
 * per read transaction, measured in docs/benchmarks.md). */
static _Thread_local struct {
    sqlite_store *s;        /* store of the open scope; NULL: none */
    const qrl_fiber *owner; /* who began it: a fiber, or NULL for the thread itself */
    int depth;              /* read_begin calls not ended yet */
    int txn;                /* BEGIN ran on lease.c: the scope holds one count of the lease */
} scope;

static void scope_join(sqlite_store *s)
{
    if (scope.s != s || scope.txn || scope.owner != qrl_fiber_self())
        return;
    if (exec_id(lease.c, ST_BEGIN_READ, "begin read") == QRL_OK) {
        scope.txn = 1;
        lease.depth++;
    }
}

static qrl_err lease_begin(qrl_store *st)
{
    sqlite_store *s = (sqlite_store *)st;
    struct conn *c = NULL;
    qrl_err rc = QRL_OK;

    if (s == NULL)
        return QRL_ERR_INVALID;
    if (lease.s == s) {
        lease.depth++;
        return QRL_OK;
    }
    /* The writer reads on its own connection; a thread already leasing from another store
     * handle (tests open several) uses its own too. */
    if (lease.s != NULL || writer_of == s)
        return QRL_OK;
    pthread_mutex_lock(&s->rmu);
    while (s->rfree == NULL && s->ropen >= READ_CONNS)
        pthread_cond_wait(&s->rfree_cv, &s->rmu);
    if (s->rfree != NULL) {
        c = s->rfree;
        s->rfree = c->rnext;
    } else {
        rc = conn_open(s->path, &c, NULL, 0);
        if (rc == QRL_OK) {
            s->ropen++;
            pthread_mutex_lock(&s->lock);
            c->next = s->conns;
            s->conns = c;
            pthread_mutex_unlock(&s->lock);
        }
    }
    pthread_mutex_unlock(&s->rmu);
    if (rc != QRL_OK)
        return rc;
    lease.s = s;
    lease.c = c;
    lease.depth = 1;
    scope_join(s);
    return QRL_OK;
}

static void lease_end(qrl_store *st)
{
    sqlite_store *s = (sqlite_store *)st;
    struct conn *c = lease.c;

    if (lease.s != s || --lease.depth > 0)
        return;
    lease.s = NULL;
    lease.c = NULL;
    pthread_mutex_lock(&s->rmu);
    c->rnext = s->rfree;
    s->rfree = c;
    pthread_cond_signal(&s->rfree_cv);
    pthread_mutex_unlock(&s->rmu);
}

/* Ends the thread's scope, if any: its read transaction and its hold on the lease. */
static void scope_close(void)
{
    sqlite_store *s = scope.s;

    if (s == NULL)
        return;
    if (scope.txn) {
        /* Every statement was reset by its read method: COMMIT ends the read transaction. */
        if (exec_id(lease.c, ST_COMMIT, "end read") != QRL_OK)
            (void)exec_id(lease.c, ST_ROLLBACK, "rollback read");
        scope.txn = 0;
        lease_end(&s->base);
    }
    scope.s = NULL;
    scope.owner = NULL;
    scope.depth = 0;
}

static qrl_err read_begin(qrl_store *st)
{
    sqlite_store *s = (sqlite_store *)st;
    const qrl_fiber *self = qrl_fiber_self();

    if (s == NULL)
        return QRL_ERR_INVALID;
    if (scope.s == s && scope.owner == self) {
        scope.depth++;
        return QRL_OK;
    }
    /* Left by a fiber that waited other than in a write: ended, never shared. */
    if (scope.s != NULL && scope.owner != self)
        scope_close();
    /* The writer reads its own batch; inside a read method, or with a scope on another store
     * handle (tests open several), reads stand alone. */
    if (scope.s != NULL || writer_of == s || lease.s != NULL)
        return QRL_OK;
    scope.s = s;
    scope.owner = self;
    scope.depth = 1;
    return QRL_OK;
}

static void read_end(qrl_store *st)
{
    if (st == NULL || scope.s != (sqlite_store *)st || scope.owner != qrl_fiber_self())
        return;
    if (--scope.depth == 0)
        scope_close();
}

/* Defines the read method `name` as its body name##_r run under a lease. */
#define READ_METHOD(name, params, args)                                                            \
    static qrl_err name params                                                                     \
    {                                                                                              \
        qrl_err rc = lease_begin(st);                                                              \
        if (rc != QRL_OK)                                                                          \
            return rc;                                                                             \
        rc = name##_r args;                                                                        \
        lease_end(st);                                                                             \
        return rc;                                                                                 \
    }

static qrl_err store_conn(qrl_store *st, struct conn **out)
{
    if (st == NULL)
        return QRL_ERR_INVALID;
    if (lease.s == (sqlite_store *)st) {
        *out = lease.c;
        return QRL_OK;
    }
    return conn_get((sqlite_store *)st, out);
}

/* --- schema ------------------------------------------------------------------------------- */

static int user_version(sqlite3 *db, int *v)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Brings the schema to SCHEMA_VERSION: every missing migration and the new user_version in one
 * IMMEDIATE transaction, so a second process opening the file at the same moment waits and then
 * sees the finished schema. */
static qrl_err schema_migrate(struct conn *c, const char *path, char *errbuf, size_t errlen)
{
    char sql[64];
    char *msg = NULL;
    int v = 0;
    int in_tx = 0;
    qrl_err rc = QRL_ERR_STORE;

    if (user_version(c->db, &v) != SQLITE_OK)
        goto fail;
    if (v == SCHEMA_VERSION)
        return QRL_OK;
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    in_tx = 1;
    if (user_version(c->db, &v) != SQLITE_OK)
        goto fail;
    if (v < 0 || v > SCHEMA_VERSION) {
        set_errbuf(errbuf, errlen, "%s: schema version %d is not known to this program (%d)", path,
                   v, SCHEMA_VERSION);
        goto out;
    }
    for (int i = v; i < SCHEMA_VERSION; i++) {
        if (sqlite3_exec(c->db, migrations[i], NULL, NULL, &msg) != SQLITE_OK) {
            set_errbuf(errbuf, errlen, "%s: migration to version %d: %s", path, i + 1,
                       msg != NULL ? msg : "failed");
            goto out;
        }
    }
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", SCHEMA_VERSION);
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    in_tx = 0;
    rc = QRL_OK;
    goto out;
fail:
    set_errbuf(errbuf, errlen, "%s: schema: %s", path, sqlite3_errmsg(c->db));
out:
    if (in_tx && !sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_free(msg);
    return rc;
}

/* --- accounts ----------------------------------------------------------------------------- */

static qrl_err account_create_w(qrl_store *st, qrl_account_rec *acc)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (acc == NULL || !str_fits(acc->username, sizeof acc->username) ||
        !str_fits(acc->display_name, sizeof acc->display_name) ||
        !str_fits(acc->pw_hash, sizeof acc->pw_hash))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_ACCOUNT_INSERT, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, acc->username, &brc);
    bind_text(s, 2, acc->display_name, &brc);
    bind_text(s, 3, acc->pw_hash, &brc);
    bind_i64(s, 4, acc->created_ms, &brc);
    bind_i64(s, 5, acc->disabled != 0, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "account_create");
    rc = stmt_run(c, s, "account_create");
    if (rc == QRL_OK)
        acc->id = sqlite3_last_insert_rowid(c->db);
    return rc;
}

/* Looks up one account with a prepared statement whose ?1 the caller bound. */
static qrl_err account_fetch(struct conn *c, sqlite3_stmt *s, qrl_account_rec *out)
{
    int src = sqlite3_step(s);
    qrl_err rc;

    if (src == SQLITE_ROW)
        rc = read_account(s, out);
    else if (src == SQLITE_DONE)
        rc = QRL_ERR_NOT_FOUND;
    else
        rc = db_fail(c, src, "account");
    sqlite3_reset(s);
    return rc;
}

static qrl_err account_get_r(qrl_store *st, int64_t id, qrl_account_rec *out)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_ACCOUNT_GET, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "account_get");
    return account_fetch(c, s, out);
}

READ_METHOD(account_get, (qrl_store * st, int64_t id, qrl_account_rec *out), (st, id, out))

static qrl_err account_by_name_r(qrl_store *st, const char *username, qrl_account_rec *out)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (out == NULL || !str_fits(username, sizeof out->username))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_ACCOUNT_BY_NAME, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, username, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "account_by_name");
    return account_fetch(c, s, out);
}

READ_METHOD(account_by_name, (qrl_store * st, const char *username, qrl_account_rec *out),
            (st, username, out))

static qrl_err account_set_password_w(qrl_store *st, int64_t id, const char *pw_hash)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (!str_fits(pw_hash, QRL_PWHASH_MAX + 1))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_ACCOUNT_SET_PW, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_text(s, 2, pw_hash, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "account_set_password");
    rc = stmt_run(c, s, "account_set_password");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}

/* --- devices and tokens (shared pieces run inside the caller's transaction) ----------------- */

static int device_valid(const qrl_device_rec *dev)
{
    return dev != NULL && str_fits(dev->name, sizeof dev->name) &&
           str_fits(dev->kind, sizeof dev->kind) && str_fits(dev->address, sizeof dev->address);
}

static int token_valid(const qrl_token_rec *tok)
{
    return tok != NULL && tok->kind >= QRL_TOKEN_ACCESS && tok->kind <= QRL_TOKEN_SESSION &&
           str_fits(tok->client_id, sizeof tok->client_id) &&
           str_fits(tok->scope, sizeof tok->scope);
}

static int tokens_valid(const qrl_token_rec *tok, size_t n)
{
    if (n > 0 && tok == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!token_valid(&tok[i]))
            return 0;
    return 1;
}

static qrl_err insert_device(struct conn *c, const qrl_device_rec *dev, int64_t account_id,
                             int64_t *id)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = stmt_get(c, ST_DEVICE_INSERT, &s);

    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, account_id, &brc);
    bind_text(s, 2, dev->name, &brc);
    bind_text(s, 3, dev->kind, &brc);
    bind_text(s, 4, dev->address, &brc);
    bind_i64(s, 5, dev->created_ms, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "device insert");
    rc = stmt_run(c, s, "device insert");
    if (rc == QRL_OK)
        *id = sqlite3_last_insert_rowid(c->db);
    return rc;
}

static qrl_err insert_token(struct conn *c, const qrl_token_rec *tok, int64_t device_id)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = stmt_get(c, ST_TOKEN_INSERT, &s);

    if (rc != QRL_OK)
        return rc;
    bind_hash(s, 1, &tok->hash, &brc);
    bind_i64(s, 2, (int64_t)tok->kind, &brc);
    bind_i64(s, 3, device_id, &brc);
    bind_i64(s, 4, tok->created_ms, &brc);
    bind_i64(s, 5, tok->expires_ms, &brc);
    bind_i64(s, 6, tok->used_ms, &brc);
    bind_i64(s, 7, tok->revoked_ms, &brc);
    bind_text(s, 8, tok->client_id, &brc);
    bind_text(s, 9, tok->scope, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "token insert");
    return stmt_run(c, s, "token insert");
}

static qrl_err insert_tokens(struct conn *c, const qrl_token_rec *tok, size_t n, int64_t device_id)
{
    qrl_err rc = QRL_OK;

    for (size_t i = 0; i < n && rc == QRL_OK; i++)
        rc = insert_token(c, &tok[i], device_id);
    return rc;
}

/* Sets revoked_ms of an active device and of its tokens not revoked yet. */
static qrl_err revoke_device_tx(struct conn *c, int64_t device_id, int64_t now_ms)
{
    enum stmt_id ids[] = {ST_DEVICE_SET_REVOKED, ST_DEVICE_REVOKE_TOKENS};
    sqlite3_stmt *s = NULL;
    qrl_err rc = QRL_OK;

    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && rc == QRL_OK; i++) {
        int brc = SQLITE_OK;

        if ((rc = stmt_get(c, ids[i], &s)) != QRL_OK)
            break;
        bind_i64(s, 1, device_id, &brc);
        bind_i64(s, 2, now_ms, &brc);
        rc = brc != SQLITE_OK ? db_fail(c, brc, "device revoke") : stmt_run(c, s, "device revoke");
    }
    return rc;
}

/* Runs a bound device SELECT and decodes its first row. */
static qrl_err fetch_device(struct conn *c, sqlite3_stmt *s, qrl_device_rec *out)
{
    int src = sqlite3_step(s);
    qrl_err rc;

    if (src == SQLITE_ROW)
        rc = read_device(s, out);
    else if (src == SQLITE_DONE)
        rc = QRL_ERR_NOT_FOUND;
    else
        rc = db_fail(c, src, "device");
    sqlite3_reset(s);
    return rc;
}

static qrl_err device_get_conn(struct conn *c, int64_t id, qrl_device_rec *out)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = stmt_get(c, ST_DEVICE_GET, &s);

    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "device_get");
    return fetch_device(c, s, out);
}

static qrl_err token_lookup_conn(struct conn *c, const qrl_hash *h, qrl_token_rec *out)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    qrl_err rc = stmt_get(c, ST_TOKEN_LOOKUP, &s);

    if (rc != QRL_OK)
        return rc;
    bind_hash(s, 1, h, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "token_lookup");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        rc = read_token(s, out);
    else if (src == SQLITE_DONE)
        rc = QRL_ERR_NOT_FOUND;
    else
        rc = db_fail(c, src, "token_lookup");
    sqlite3_reset(s);
    return rc;
}

/* --- devices ------------------------------------------------------------------------------ */

static qrl_err device_create_w(qrl_store *st, qrl_device_rec *dev, qrl_token_rec *tok, size_t ntok)
{
    struct conn *c;
    int64_t id = 0;
    qrl_err rc;

    if (!device_valid(dev) || !tokens_valid(tok, ntok))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = tx_begin(c)) != QRL_OK)
        return rc;
    rc = insert_device(c, dev, dev->account_id, &id);
    if (rc == QRL_OK)
        rc = insert_tokens(c, tok, ntok, id);
    if (rc != QRL_OK) {
        tx_end(c, 0);
        return rc;
    }
    if ((rc = tx_end(c, 1)) != QRL_OK)
        return rc;
    dev->id = id;
    dev->last_seen_ms = dev->created_ms;
    dev->revoked_ms = 0;
    for (size_t i = 0; i < ntok; i++)
        tok[i].device_id = id;
    return QRL_OK;
}

static qrl_err device_get_r(qrl_store *st, int64_t id, qrl_device_rec *out)
{
    struct conn *c;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK)
        return rc;
    return device_get_conn(c, id, out);
}

READ_METHOD(device_get, (qrl_store * st, int64_t id, qrl_device_rec *out), (st, id, out))

static qrl_err device_list_r(qrl_store *st, int64_t account_id, qrl_device_rec *out, size_t max,
                             size_t *n)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    size_t k = 0;
    qrl_err rc;

    if (n == NULL || (max > 0 && out == NULL))
        return QRL_ERR_INVALID;
    *n = 0;
    if (max == 0)
        return QRL_OK;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_DEVICE_LIST, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, account_id, &brc);
    bind_i64(s, 2, limit_of(max), &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "device_list");
    while ((src = sqlite3_step(s)) == SQLITE_ROW && k < max) {
        if ((rc = read_device(s, &out[k])) != QRL_OK)
            break;
        k++;
    }
    if (rc == QRL_OK && src != SQLITE_DONE && src != SQLITE_ROW)
        rc = db_fail(c, src, "device_list");
    sqlite3_reset(s);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

READ_METHOD(device_list,
            (qrl_store * st, int64_t account_id, qrl_device_rec *out, size_t max, size_t *n),
            (st, account_id, out, max, n))

static qrl_err device_touch_w(qrl_store *st, int64_t device_id, int64_t now_ms, const char *address)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (address != NULL && !str_fits(address, QRL_MAX_ADDRESS + 1))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_DEVICE_TOUCH, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, device_id, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_text(s, 3, address, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "device_touch");
    rc = stmt_run(c, s, "device_touch");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}

static qrl_err device_revoke_w(qrl_store *st, int64_t account_id, int64_t device_id, int64_t now_ms)
{
    struct conn *c;
    qrl_device_rec dev;
    int commit = 0;
    qrl_err rc;

    /* revoked_ms == 0 means active: a revocation at time 0 would silently not happen. */
    if (now_ms <= 0)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = tx_begin(c)) != QRL_OK)
        return rc;
    rc = device_get_conn(c, device_id, &dev);
    if (rc == QRL_OK && dev.account_id != account_id)
        rc = QRL_ERR_NOT_FOUND;
    if (rc == QRL_OK && dev.revoked_ms == 0) {
        rc = revoke_device_tx(c, device_id, now_ms);
        commit = rc == QRL_OK;
    }
    if (commit)
        return tx_end(c, 1);
    tx_end(c, 0);
    return rc;
}

/* --- tokens ------------------------------------------------------------------------------- */

static qrl_err token_insert_w(qrl_store *st, const qrl_token_rec *tok)
{
    struct conn *c;
    qrl_err rc;

    if (!token_valid(tok))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK)
        return rc;
    return insert_token(c, tok, tok->device_id);
}

static qrl_err token_lookup_r(qrl_store *st, const qrl_hash *h, qrl_token_rec *out)
{
    struct conn *c;
    qrl_err rc;

    if (h == NULL || out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK)
        return rc;
    return token_lookup_conn(c, h, out);
}

READ_METHOD(token_lookup, (qrl_store * st, const qrl_hash *h, qrl_token_rec *out), (st, h, out))

#define AUTH_ACCOUNT_COL 12
#define AUTH_DEVICE_COL 18

static qrl_err token_auth_r(qrl_store *st, const qrl_hash *h, qrl_token_rec *tok,
                            qrl_account_rec *acc, qrl_device_rec *dev)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    qrl_err rc;

    if (h == NULL || tok == NULL || acc == NULL || dev == NULL)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_TOKEN_AUTH, &s)) != QRL_OK)
        return rc;
    bind_hash(s, 1, h, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "token_auth");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        rc = read_token(s, tok);
        if (rc == QRL_OK)
            rc = read_account_at(s, AUTH_ACCOUNT_COL, acc);
        if (rc == QRL_OK)
            rc = read_device_at(s, AUTH_DEVICE_COL, dev);
    } else {
        rc = src == SQLITE_DONE ? QRL_ERR_NOT_FOUND : db_fail(c, src, "token_auth");
    }
    sqlite3_reset(s);
    return rc;
}

READ_METHOD(token_auth,
            (qrl_store * st, const qrl_hash *h, qrl_token_rec *tok, qrl_account_rec *acc,
             qrl_device_rec *dev),
            (st, h, tok, acc, dev))

/* The checks and writes of token_rotate inside its transaction. Sets *commit when the outcome
 * must be committed (success, and the device revocation on reuse). */
static qrl_err token_rotate_tx(struct conn *c, const qrl_hash *old, int64_t now_ms,
                               qrl_token_rec *new_tok, size_t n, qrl_token_rec *rec, int *commit)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = token_lookup_conn(c, old, rec);

    if (rc == QRL_OK && rec->kind != QRL_TOKEN_REFRESH)
        rc = QRL_ERR_NOT_FOUND;
    if (rc != QRL_OK)
        return rc;
    if (rec->revoked_ms != 0 || rec->device_revoked || rec->account_disabled)
        return QRL_ERR_REVOKED;
    if (rec->expires_ms <= now_ms)
        return QRL_ERR_EXPIRED;
    if (rec->used_ms != 0) {
        /* RFC 6749 section 10.4: a rotated token came back, so one of its holders is an
         * attacker. Revoke the whole device and keep that even though the call fails. */
        rc = revoke_device_tx(c, rec->device_id, now_ms);
        *commit = rc == QRL_OK;
        return rc == QRL_OK ? QRL_ERR_TOKEN_REUSED : rc;
    }
    if ((rc = stmt_get(c, ST_TOKEN_SET_USED, &s)) != QRL_OK)
        return rc;
    bind_hash(s, 1, old, &brc);
    bind_i64(s, 2, now_ms, &brc);
    rc = brc != SQLITE_OK ? db_fail(c, brc, "token_rotate") : stmt_run(c, s, "token_rotate");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_CONFLICT; /* cannot happen under the write lock */
    if (rc == QRL_OK)
        rc = insert_tokens(c, new_tok, n, rec->device_id);
    *commit = rc == QRL_OK;
    return rc;
}

static qrl_err token_rotate_w(qrl_store *st, const qrl_hash *old, int64_t now_ms,
                              qrl_token_rec *new_tok, size_t n, qrl_token_rec *old_out)
{
    struct conn *c;
    qrl_token_rec rec;
    int commit = 0;
    qrl_err rc, erc;

    memset(&rec, 0, sizeof rec);
    /* used_ms == 0 means unused: a rotation at time 0 would make reuse undetectable. */
    if (old == NULL || now_ms <= 0 || !tokens_valid(new_tok, n))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = tx_begin(c)) != QRL_OK)
        return rc;
    rc = token_rotate_tx(c, old, now_ms, new_tok, n, &rec, &commit);
    erc = tx_end(c, commit);
    if (erc != QRL_OK)
        return erc;
    if (rc == QRL_OK) {
        rec.used_ms = now_ms;
        for (size_t i = 0; i < n; i++)
            new_tok[i].device_id = rec.device_id;
    }
    if (old_out != NULL && (rc == QRL_OK || rc == QRL_ERR_REVOKED || rc == QRL_ERR_EXPIRED ||
                            rc == QRL_ERR_TOKEN_REUSED))
        *old_out = rec;
    return rc;
}

static qrl_err token_revoke_w(qrl_store *st, const qrl_hash *h, int64_t now_ms)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (h == NULL || now_ms <= 0)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_TOKEN_REVOKE, &s)) != QRL_OK)
        return rc;
    bind_hash(s, 1, h, &brc);
    bind_i64(s, 2, now_ms, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "token_revoke");
    rc = stmt_run(c, s, "token_revoke");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}

/* --- user codes ----------------------------------------------------------------------------
 *
 * A phone that cannot scan types the screen's user code; lr_create must keep the codes of
 * unexpired requests unique. An index on the code did both, but its key is random: every new
 * request wrote one random leaf of it to the WAL, copied it back at the next checkpoint, and
 * re-read leaves that had left the writer's page cache, so the rate of new requests fell as the
 * table grew (docs/benchmarks.md). The store keeps the map in memory instead, as the server keeps
 * its poll table: this needs one server process per database file, which the SQLite store
 * already assumes (docs/architecture.md).
 *
 * - It is loaded from the table on first use: the unexpired requests among those whose ids fall
 *   in the last two hours of the clock (a request lives at most an hour, and its id is the
 *   clock when it was made: secret.c) and those with ids below 2^40 (counted ids from before
 *   schema version 3). Both are ranges of the primary key: no full scan.
 * - Only the writer adds to it (lr_create), in id order, so the newest request wins a code.
 * - An entry is a hint, never the answer: a lookup reads the row by its id and checks the code
 *   and the expiry, so an entry left by a write that was rolled back is harmless (it reads as
 *   "no such request", and lr_create reuses its code).
 * - Expired entries stay until the table is rebuilt, which drops them; rebuilds come when
 *   three quarters of the slots are used, so their cost is spread over the inserts. */

#define UC_MIN_CAP 1024
#define UC_LEGACY_IDS (INT64_C(1) << 40)
#define UC_LOAD_WINDOW_MS (INT64_C(2) * 3600 * 1000)

static int uc_pack(const char *code, uint64_t *out)
{
    if (code == NULL || strlen(code) != QRL_USER_CODE_LEN)
        return 0;
    *out = 0;
    memcpy(out, code, QRL_USER_CODE_LEN);
    return 1;
}

static size_t uc_home(const struct uc_map *m, uint64_t code)
{
    return (size_t)((code * m->mul) >> m->shift);
}

/* The slot holding `code`, or NULL. Caller holds m->mu. */
static struct uc_slot *uc_find(struct uc_map *m, uint64_t code)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = uc_home(m, code);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i].code == code)
            return &m->slot[i];
        if (m->slot[i].code == 0)
            return NULL;
    }
}

/* Rebuilds the table with room for twice its unexpired entries (at `now_ms`), dropping the
 * expired ones. */
static qrl_err uc_rebuild(struct uc_map *m, int64_t now_ms)
{
    size_t live = 0, cap = UC_MIN_CAP;
    unsigned bits = 10;
    struct uc_slot *old = m->slot, *ns;
    size_t ocap = m->cap;

    for (size_t i = 0; i < ocap; i++)
        if (old[i].code != 0 && old[i].expires_ms > now_ms)
            live++;
    while (cap < 2 * (live + 1)) {
        cap *= 2;
        bits++;
    }
    ns = calloc(cap, sizeof *ns);
    if (ns == NULL)
        return QRL_ERR_NOMEM;
    m->slot = ns;
    m->cap = cap;
    m->shift = 64 - bits;
    m->used = 0;
    for (size_t i = 0; i < ocap; i++) {
        size_t j;
        if (old[i].code == 0 || old[i].expires_ms <= now_ms)
            continue;
        for (j = uc_home(m, old[i].code); ns[j].code != 0; j = (j + 1) & (cap - 1))
            ;
        ns[j] = old[i];
        m->used++;
    }
    free(old);
    return QRL_OK;
}

/* Makes room for one more code (rebuilding the table if it would be over three quarters full),
 * so that the uc_place() after it cannot fail. Caller holds m->mu. */
static qrl_err uc_reserve(struct uc_map *m, int64_t now_ms)
{
    if ((m->used + 1) * 4 > m->cap * 3)
        return uc_rebuild(m, now_ms);
    return QRL_OK;
}

/* Points `code` at request `id`, replacing what it named before; after uc_reserve(). Caller
 * holds m->mu. */
static void uc_place(struct uc_map *m, uint64_t code, int64_t id, int64_t expires_ms)
{
    struct uc_slot *e;
    size_t i;

    /* One probe: the code's slot, or the free one that ends its run. */
    for (i = uc_home(m, code); m->slot[i].code != 0 && m->slot[i].code != code;
         i = (i + 1) & (m->cap - 1))
        ;
    e = &m->slot[i];
    if (e->code == 0) {
        e->code = code;
        m->used++;
    }
    e->id = id;
    e->expires_ms = expires_ms;
}

/* uc_reserve() and uc_place() in one. Caller holds m->mu. */
static qrl_err uc_put(struct uc_map *m, uint64_t code, int64_t id, int64_t expires_ms,
                      int64_t now_ms)
{
    qrl_err rc = uc_reserve(m, now_ms);

    if (rc == QRL_OK)
        uc_place(m, code, id, expires_ms);
    return rc;
}

/* Loads the map from the table on first use, on the caller's connection. Caller holds m->mu. */
static qrl_err uc_load(struct uc_map *m, struct conn *c, int64_t now_ms)
{
    struct timespec ts;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    int64_t wall_ms;
    qrl_err rc;

    if (m->built)
        return QRL_OK;
    if ((rc = stmt_get(c, ST_LR_LIVE_CODES, &s)) != QRL_OK)
        return rc;
    clock_gettime(CLOCK_REALTIME, &ts);
    wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    bind_i64(s, 1, UC_LEGACY_IDS, &brc);
    bind_i64(s, 2, wall_ms > UC_LOAD_WINDOW_MS ? (wall_ms - UC_LOAD_WINDOW_MS) << 11 : 0, &brc);
    bind_i64(s, 3, now_ms, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "user codes");
    randombytes_buf(&m->mul, sizeof m->mul);
    m->mul |= 1;
    if ((rc = uc_rebuild(m, now_ms)) != QRL_OK) {
        sqlite3_reset(s);
        return rc;
    }
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t code;
        const char *t = (const char *)sqlite3_column_text(s, 1);
        if (!uc_pack(t, &code))
            continue; /* not a code lr_create wrote: it can never be typed */
        rc = uc_put(m, code, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 2), now_ms);
        if (rc != QRL_OK)
            break;
    }
    sqlite3_reset(s);
    if (rc == QRL_OK && src != SQLITE_DONE)
        rc = db_fail(c, src, "user codes");
    if (rc == QRL_OK)
        m->built = 1;
    return rc;
}

/* The id of the request an unexpired entry names for `code`, or 0. */
static int64_t uc_lookup(sqlite_store *s, struct conn *c, const char *code, int64_t now_ms,
                         qrl_err *err)
{
    struct uc_slot *e;
    uint64_t k;
    int64_t id = 0;

    *err = QRL_OK;
    if (!uc_pack(code, &k))
        return 0;
    pthread_mutex_lock(&s->uc.mu);
    *err = uc_load(&s->uc, c, now_ms);
    if (*err == QRL_OK && (e = uc_find(&s->uc, k)) != NULL && e->expires_ms > now_ms)
        id = e->id;
    pthread_mutex_unlock(&s->uc.mu);
    return id;
}

/* --- login requests ----------------------------------------------------------------------- */

static int lr_valid(const qrl_lr_rec *lr)
{
    return lr != NULL && lr->state == QRL_LR_PENDING &&
           str_fits(lr->user_code, sizeof lr->user_code) &&
           str_fits(lr->client_id, sizeof lr->client_id) && str_fits(lr->scope, sizeof lr->scope) &&
           str_fits(lr->device_name, sizeof lr->device_name) &&
           str_fits(lr->device_kind, sizeof lr->device_kind) &&
           str_fits(lr->device_platform, sizeof lr->device_platform) &&
           str_fits(lr->address, sizeof lr->address);
}

static qrl_err lr_get_conn(struct conn *c, int64_t id, qrl_lr_rec *out);

/* Whether an unexpired request in a non-terminal state already has lr's user code, by the
 * entry the map holds for it (the newest request with that code). Caller holds uc.mu. */
static qrl_err lr_code_taken(struct conn *c, struct uc_slot *e, const qrl_lr_rec *lr)
{
    qrl_lr_rec old;
    qrl_err rc;

    if (e == NULL || e->expires_ms <= lr->created_ms)
        return QRL_OK;
    rc = lr_get_conn(c, e->id, &old);
    if (rc == QRL_ERR_NOT_FOUND)
        return QRL_OK; /* its write was rolled back, or it was swept */
    if (rc != QRL_OK)
        return rc;
    if (strcmp(old.user_code, lr->user_code) == 0 && old.expires_ms > lr->created_ms &&
        (old.state == QRL_LR_PENDING || old.state == QRL_LR_SCANNED ||
         old.state == QRL_LR_APPROVED))
        return QRL_ERR_EXISTS;
    return QRL_OK;
}

/* The user-code check and the insert of lr_create. Its one write is the INSERT, and nothing
 * after it can fail (the user-code table makes room first), so the INSERT's own atomicity is
 * the unit's: see lr_create_w. */
static qrl_err lr_create_tx(sqlite_store *st, struct conn *c, const qrl_lr_rec *lr)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    uint64_t code;
    qrl_err rc;

    if (!uc_pack(lr->user_code, &code))
        return QRL_ERR_INVALID;
    pthread_mutex_lock(&st->uc.mu);
    if ((rc = uc_load(&st->uc, c, lr->created_ms)) != QRL_OK ||
        (rc = lr_code_taken(c, uc_find(&st->uc, code), lr)) != QRL_OK ||
        (rc = uc_reserve(&st->uc, lr->created_ms)) != QRL_OK ||
        (rc = stmt_get(c, ST_LR_INSERT, &s)) != QRL_OK)
        goto out;
    bind_hash(s, 1, &lr->device_code_hash, &brc);
    bind_hash(s, 2, &lr->scan_hash, &brc);
    bind_text(s, 3, lr->user_code, &brc);
    bind_text(s, 4, lr->client_id, &brc);
    bind_text(s, 5, lr->scope, &brc);
    bind_text(s, 6, lr->device_name, &brc);
    bind_text(s, 7, lr->device_kind, &brc);
    bind_text(s, 8, lr->address, &brc);
    bind_i64(s, 9, lr->created_ms, &brc);
    bind_i64(s, 10, lr->expires_ms, &brc);
    bind_i64(s, 11, lr->interval_s, &brc);
    bind_i64(s, 12, (int64_t)lr->state, &brc);
    bind_i64(s, 13, lr->updated_ms, &brc);
    bind_i64(s, 14, lr->claimed_device_id, &brc);
    bind_i64(s, 15, lr->account_id, &brc);
    bind_i64(s, 16, lr->approving_device_id, &brc);
    bind_i64(s, 17, lr->redeemed_device_id, &brc);
    bind_i64(s, 18, lr->id, &brc);
    bind_text(s, 19, lr->device_platform, &brc);
    if (brc != SQLITE_OK) {
        rc = db_fail(c, brc, "lr_create");
        goto out;
    }
    if ((rc = stmt_run(c, s, "lr_create")) == QRL_OK)
        uc_place(&st->uc, code, lr->id, lr->expires_ms);
out:
    pthread_mutex_unlock(&st->uc.mu);
    return rc;
}

static qrl_err lr_create_w(qrl_store *st, qrl_lr_rec *lr)
{
    struct conn *c;
    qrl_err rc;

    if (!lr_valid(lr) || lr->id <= 0)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK)
        return rc;
    /* Inside the writer's batch, no savepoint: a failed INSERT is backed out by SQLite itself
     * while the batch's transaction goes on (an error that ends the transaction instead is
     * caught by run_batch), and lr_create_tx writes nothing else. A savepoint around it cost
     * two more statements and a copy of the table's last page into the savepoint journal,
     * that page having been changed by the batch's previous insert. */
    if (c->in_batch)
        return lr_create_tx((sqlite_store *)st, c, lr);
    if ((rc = tx_begin(c)) != QRL_OK)
        return rc;
    rc = lr_create_tx((sqlite_store *)st, c, lr);
    if (rc != QRL_OK) {
        tx_end(c, 0);
        return rc;
    }
    return tx_end(c, 1);
}

/* Runs a bound login-request SELECT and decodes its first row. */
static qrl_err fetch_lr(struct conn *c, sqlite3_stmt *s, qrl_lr_rec *out)
{
    int src = sqlite3_step(s);
    qrl_err rc;

    if (src == SQLITE_ROW)
        rc = read_lr(s, out);
    else if (src == SQLITE_DONE)
        rc = QRL_ERR_NOT_FOUND;
    else
        rc = db_fail(c, src, "login request");
    sqlite3_reset(s);
    return rc;
}

static qrl_err lr_get_conn(struct conn *c, int64_t id, qrl_lr_rec *out)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = stmt_get(c, ST_LR_GET, &s);

    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "lr_get");
    return fetch_lr(c, s, out);
}

static qrl_err lr_get_r(qrl_store *st, int64_t id, qrl_lr_rec *out)
{
    struct conn *c;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK)
        return rc;
    return lr_get_conn(c, id, out);
}

READ_METHOD(lr_get, (qrl_store * st, int64_t id, qrl_lr_rec *out), (st, id, out))

/* By device code or scan secret: the row with the key's id, if the hash matches (constant
 * time). A wrong hash is answered like a missing row. */
static qrl_err lr_by_secret(qrl_store *st, qrl_lr_key kind, const qrl_lr_secret_key *key,
                            qrl_lr_rec *out)
{
    struct conn *c;
    const qrl_hash *h;
    qrl_err rc;

    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = lr_get_conn(c, key->id, out)) != QRL_OK)
        return rc;
    h = kind == QRL_LR_KEY_DEVICE_CODE ? &out->device_code_hash : &out->scan_hash;
    if (sodium_memcmp(h->b, key->hash.b, sizeof h->b) != 0) {
        sodium_memzero(out, sizeof *out);
        return QRL_ERR_NOT_FOUND;
    }
    return QRL_OK;
}

static qrl_err lr_find_r(qrl_store *st, qrl_lr_key kind, const void *key, int64_t now_ms,
                         qrl_lr_rec *out)
{
    struct conn *c;
    int64_t id;
    qrl_err rc;

    if (key == NULL || out == NULL)
        return QRL_ERR_INVALID;
    switch (kind) {
    case QRL_LR_KEY_DEVICE_CODE:
    case QRL_LR_KEY_SCAN:
        return lr_by_secret(st, kind, key, out);
    case QRL_LR_KEY_USER_CODE:
        if (!str_fits(key, QRL_USER_CODE_LEN + 1))
            return QRL_ERR_INVALID;
        break;
    default:
        return QRL_ERR_INVALID;
    }
    if ((rc = store_conn(st, &c)) != QRL_OK)
        return rc;
    id = uc_lookup((sqlite_store *)st, c, key, now_ms, &rc);
    if (rc != QRL_OK)
        return rc;
    if (id == 0)
        return QRL_ERR_NOT_FOUND;
    /* The map's entry is a hint: the row decides. */
    rc = lr_get_conn(c, id, out);
    if (rc == QRL_OK && (strcmp(out->user_code, key) != 0 || out->expires_ms <= now_ms)) {
        sodium_memzero(out, sizeof *out);
        rc = QRL_ERR_NOT_FOUND;
    }
    return rc;
}

READ_METHOD(lr_find,
            (qrl_store * st, qrl_lr_key kind, const void *key, int64_t now_ms, qrl_lr_rec *out),
            (st, kind, key, now_ms, out))

static qrl_err lr_transition_w(qrl_store *st, const qrl_lr_cas *cas)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (cas == NULL || cas->to < QRL_LR_PENDING || cas->to > QRL_LR_EXPIRED)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_LR_TRANSITION, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, cas->id, &brc);
    bind_i64(s, 2, (int64_t)cas->to, &brc);
    bind_i64(s, 3, cas->now_ms, &brc);
    bind_i64(s, 4, (int64_t)cas->from_mask, &brc);
    bind_i64(s, 5, cas->set_claimed_device_id, &brc);
    bind_i64(s, 6, cas->set_account_id, &brc);
    bind_i64(s, 7, cas->set_approving_device_id, &brc);
    bind_i64(s, 8, cas->require_claimed_by, &brc);
    bind_text(s, 9, cas->set_nonce, &brc);
    bind_text(s, 10, cas->require_nonce, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "lr_transition");
    rc = stmt_run(c, s, "lr_transition");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_CONFLICT;
    return rc;
}

/* Whether the approver of a request is still valid: the account exists and is not disabled,
 * and the approving device exists, belongs to it and is not revoked. */
static qrl_err approver_valid(struct conn *c, const qrl_lr_rec *lr, int *valid)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    qrl_err rc = stmt_get(c, ST_LR_APPROVER, &s);

    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, lr->account_id, &brc);
    bind_i64(s, 2, lr->approving_device_id, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "lr_redeem");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        *valid = sqlite3_column_type(s, 0) != SQLITE_NULL && sqlite3_column_int(s, 0) == 0 &&
                 sqlite3_column_type(s, 1) != SQLITE_NULL && sqlite3_column_int64(s, 1) == 0;
    } else {
        rc = db_fail(c, src, "lr_redeem");
    }
    sqlite3_reset(s);
    return rc;
}

/* Runs a bound UPDATE of one login request in APPROVED state; CONFLICT when it matched none. */
static qrl_err lr_update_approved(struct conn *c, sqlite3_stmt *s, int brc)
{
    qrl_err rc;

    if (brc != SQLITE_OK)
        return db_fail(c, brc, "lr_redeem");
    rc = stmt_run(c, s, "lr_redeem");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_CONFLICT; /* cannot happen under the write lock */
    return rc;
}

/* The checks and writes of lr_redeem inside its transaction; *state receives the state the
 * request is in afterwards, *commit whether to commit. */
static qrl_err lr_redeem_tx(struct conn *c, int64_t id, int64_t now_ms, qrl_device_rec *dev,
                            const qrl_token_rec *tok, size_t ntok, qrl_lr_rec *lr, int *commit)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int valid = 0;
    int64_t dev_id = 0;
    qrl_err rc = lr_get_conn(c, id, lr);

    if (rc != QRL_OK)
        return rc;
    if (lr->state != QRL_LR_APPROVED)
        return QRL_ERR_CONFLICT;
    if (lr->expires_ms <= now_ms)
        return QRL_ERR_EXPIRED;
    if ((rc = approver_valid(c, lr, &valid)) != QRL_OK)
        return rc;
    if (!valid) {
        /* Design.md section 3: redemption re-checks the approver; a request approved by a
         * device or account that is no longer valid is declined for good. */
        if ((rc = stmt_get(c, ST_LR_SET_DENIED, &s)) != QRL_OK)
            return rc;
        bind_i64(s, 1, id, &brc);
        bind_i64(s, 2, now_ms, &brc);
        rc = lr_update_approved(c, s, brc);
        if (rc != QRL_OK)
            return rc;
        lr->state = QRL_LR_DENIED;
        *commit = 1;
        return QRL_ERR_DENIED;
    }
    rc = insert_device(c, dev, lr->account_id, &dev_id);
    if (rc == QRL_OK)
        rc = insert_tokens(c, tok, ntok, dev_id);
    if (rc == QRL_OK)
        rc = stmt_get(c, ST_LR_SET_REDEEMED, &s);
    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_i64(s, 3, dev_id, &brc);
    if ((rc = lr_update_approved(c, s, brc)) != QRL_OK)
        return rc;
    lr->state = QRL_LR_REDEEMED;
    lr->redeemed_device_id = dev_id;
    *commit = 1;
    return QRL_OK;
}

static qrl_err lr_redeem_w(qrl_store *st, int64_t id, int64_t now_ms, qrl_device_rec *dev,
                           qrl_token_rec *tok, size_t ntok, qrl_lr_state *state_out)
{
    struct conn *c;
    qrl_lr_rec lr;
    int commit = 0;
    qrl_err rc, erc;

    memset(&lr, 0, sizeof lr);
    if (!device_valid(dev) || !tokens_valid(tok, ntok))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = tx_begin(c)) != QRL_OK)
        return rc;
    rc = lr_redeem_tx(c, id, now_ms, dev, tok, ntok, &lr, &commit);
    erc = tx_end(c, commit);
    if (erc != QRL_OK)
        return erc;
    if (state_out != NULL &&
        (rc == QRL_OK || rc == QRL_ERR_CONFLICT || rc == QRL_ERR_EXPIRED || rc == QRL_ERR_DENIED))
        *state_out = lr.state;
    if (rc != QRL_OK)
        return rc;
    dev->id = lr.redeemed_device_id;
    dev->account_id = lr.account_id;
    dev->last_seen_ms = dev->created_ms;
    dev->revoked_ms = 0;
    for (size_t i = 0; i < ntok; i++)
        tok[i].device_id = dev->id;
    return QRL_OK;
}

static qrl_err lr_by_device_r(qrl_store *st, int64_t device_id, int64_t *ids, size_t max, size_t *n)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    size_t k = 0;
    qrl_err rc;

    if (n == NULL || (max > 0 && ids == NULL))
        return QRL_ERR_INVALID;
    *n = 0;
    if (max == 0)
        return QRL_OK;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_LR_BY_DEVICE, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, device_id, &brc);
    bind_i64(s, 2, limit_of(max), &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "lr_by_device");
    while ((src = sqlite3_step(s)) == SQLITE_ROW && k < max)
        ids[k++] = sqlite3_column_int64(s, 0);
    if (src != SQLITE_DONE && src != SQLITE_ROW)
        rc = db_fail(c, src, "lr_by_device");
    sqlite3_reset(s);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

READ_METHOD(lr_by_device, (qrl_store * st, int64_t device_id, int64_t *ids, size_t max, size_t *n),
            (st, device_id, ids, max, n))

static qrl_err lr_approve_redeem_w(qrl_store *st, const qrl_lr_cas *cas, qrl_device_rec *dev,
                                   qrl_token_rec *tok, size_t ntok)
{
    struct conn *c;
    qrl_err rc, erc;

    if (cas == NULL || cas->to != QRL_LR_APPROVED)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = tx_begin(c)) != QRL_OK)
        return rc;
    rc = lr_transition_w(st, cas);
    if (rc == QRL_OK)
        rc = lr_redeem_w(st, cas->id, cas->now_ms, dev, tok, ntok, NULL);
    erc = tx_end(c, rc == QRL_OK);
    return rc != QRL_OK ? rc : erc;
}

/* --- rate limits and housekeeping ----------------------------------------------------------- */

static qrl_err ratelimit_hit_w(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                               int64_t *count)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    int64_t hits = 0;
    qrl_err rc;

    if (!str_fits(key, RATELIMIT_KEY_MAX + 1) || window_ms <= 0 || count == NULL)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_RL_HIT, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, key, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_i64(s, 3, window_ms, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "ratelimit_hit");
    /* Step to SQLITE_DONE: with RETURNING the autocommit transaction ends only then. */
    while ((src = sqlite3_step(s)) == SQLITE_ROW)
        hits = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return db_fail(c, src, "ratelimit_hit");
    *count = hits;
    return QRL_OK;
}

static qrl_err ratelimit_peek_r(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                                int64_t *count)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    qrl_err rc;

    if (!str_fits(key, RATELIMIT_KEY_MAX + 1) || window_ms <= 0 || count == NULL)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_RL_PEEK, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, key, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "ratelimit_peek");
    src = sqlite3_step(s);
    *count = 0;
    if (src == SQLITE_ROW && now_ms < sqlite3_column_int64(s, 1) + window_ms)
        *count = sqlite3_column_int64(s, 0);
    else if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = db_fail(c, src, "ratelimit_peek");
    sqlite3_reset(s);
    return rc;
}

READ_METHOD(ratelimit_peek,
            (qrl_store * st, const char *key, int64_t now_ms, int64_t window_ms, int64_t *count),
            (st, key, now_ms, window_ms, count))

/* A bound above the id of every login request made before `ms`. Ids are the clock in ms when
 * the request was made, times 2048, plus 11 random bits (secret.c); its created_ms is that
 * clock or later (the core's clock may run ahead in tests), and counted ids from before schema
 * version 3 are small. */
static int64_t lr_ids_before(int64_t ms)
{
    if (ms <= 0)
        return 0;
    if (ms >= INT64_C(1) << 51)
        return INT64_MAX;
    return ms << 11;
}

static qrl_err sweep_w(qrl_store *st, int64_t now_ms, int64_t keep_ms)
{
    enum stmt_id ids[] = {ST_SWEEP_LR, ST_SWEEP_RL};
    struct conn *c;
    sqlite3_stmt *s = NULL;
    qrl_err rc;

    if (keep_ms < 0)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = tx_begin(c)) != QRL_OK)
        return rc;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && rc == QRL_OK; i++) {
        int brc = SQLITE_OK;

        if ((rc = stmt_get(c, ids[i], &s)) != QRL_OK)
            break;
        bind_i64(s, 1, now_ms, &brc);
        bind_i64(s, 2, keep_ms, &brc);
        if (ids[i] == ST_SWEEP_LR)
            bind_i64(s, 3, lr_ids_before(now_ms - keep_ms), &brc);
        rc = brc != SQLITE_OK ? db_fail(c, brc, "sweep") : stmt_run(c, s, "sweep");
    }
    if (rc != QRL_OK) {
        tx_end(c, 0);
        return rc;
    }
    return tx_end(c, 1);
}

/* --- handle ------------------------------------------------------------------------------- */

static void syncer_stop(sqlite_store *s);

static void store_close(qrl_store *st)
{
    sqlite_store *s = (sqlite_store *)st;
    struct conn *c, *next;

    if (s == NULL)
        return;
    /* A scope the closing thread left open (a caller that stopped halfway) must not outlive
     * the handle. */
    if (scope.s == s)
        scope_close();
    if (s->writer_started) {
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
    pthread_key_delete(s->key);
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        conn_close(c);
    }
    pthread_cond_destroy(&s->rfree_cv);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->uc.mu);
    free(s->uc.slot);
    free(s->path);
    free(s);
}

static qrl_err device_set_pubkey_w(qrl_store *st, int64_t account_id, int64_t device_id,
                                   const unsigned char pubkey[QRL_PUBKEY_BYTES])
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (pubkey == NULL)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_DEVICE_SET_PUBKEY, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, device_id, &brc);
    bind_i64(s, 2, account_id, &brc);
    if (brc == SQLITE_OK)
        brc = sqlite3_bind_blob(s, 3, pubkey, QRL_PUBKEY_BYTES, SQLITE_STATIC);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "device_set_pubkey");
    rc = stmt_run(c, s, "device_set_pubkey");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}

/* --- passkeys ------------------------------------------------------------------------------ */

static qrl_err read_passkey(sqlite3_stmt *s, qrl_passkey_rec *out)
{
    int cred_len = sqlite3_column_bytes(s, 2), pk_len = sqlite3_column_bytes(s, 4);
    int64_t count = sqlite3_column_int64(s, 5);

    memset(out, 0, sizeof *out);
    if (sqlite3_column_type(s, 2) != SQLITE_BLOB || sqlite3_column_type(s, 4) != SQLITE_BLOB ||
        cred_len < 1 || (size_t)cred_len > sizeof out->cred_id || pk_len < 1 ||
        (size_t)pk_len > sizeof out->pubkey || count < 0 || count > UINT32_MAX ||
        col_text(s, 6, out->name, sizeof out->name) != 0)
        return bad_row("passkey");
    out->id = sqlite3_column_int64(s, 0);
    out->account_id = sqlite3_column_int64(s, 1);
    memcpy(out->cred_id, sqlite3_column_blob(s, 2), (size_t)cred_len);
    out->cred_id_len = (size_t)cred_len;
    out->alg = sqlite3_column_int(s, 3);
    memcpy(out->pubkey, sqlite3_column_blob(s, 4), (size_t)pk_len);
    out->pubkey_len = (size_t)pk_len;
    out->sign_count = (uint32_t)count;
    out->created_ms = sqlite3_column_int64(s, 7);
    out->last_used_ms = sqlite3_column_int64(s, 8);
    return QRL_OK;
}

static void bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n, int *brc)
{
    int rc = sqlite3_bind_blob(s, i, p, (int)n, SQLITE_STATIC);
    if (*brc == SQLITE_OK)
        *brc = rc;
}

static qrl_err passkey_add_w(qrl_store *st, qrl_passkey_rec *pk)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (pk == NULL || pk->cred_id_len == 0 || pk->cred_id_len > sizeof pk->cred_id ||
        pk->pubkey_len == 0 || pk->pubkey_len > sizeof pk->pubkey ||
        !str_fits(pk->name, sizeof pk->name))
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_PASSKEY_INSERT, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, pk->account_id, &brc);
    bind_blob(s, 2, pk->cred_id, pk->cred_id_len, &brc);
    bind_i64(s, 3, pk->alg, &brc);
    bind_blob(s, 4, pk->pubkey, pk->pubkey_len, &brc);
    bind_i64(s, 5, pk->sign_count, &brc);
    bind_text(s, 6, pk->name, &brc);
    bind_i64(s, 7, pk->created_ms, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "passkey_add");
    brc = sqlite3_step(s);
    sqlite3_reset(s);
    /* No such account: the caller's mistake, said as for the other methods keyed by account. */
    if (brc == SQLITE_CONSTRAINT_FOREIGNKEY)
        return QRL_ERR_NOT_FOUND;
    if (brc != SQLITE_DONE)
        return db_fail(c, brc, "passkey_add");
    pk->id = sqlite3_last_insert_rowid(c->db);
    pk->last_used_ms = 0;
    return QRL_OK;
}

static qrl_err passkey_list_r(qrl_store *st, int64_t account_id, qrl_passkey_rec *out, size_t max,
                              size_t *n)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    size_t k = 0;
    qrl_err rc;

    if (n == NULL || (max > 0 && out == NULL))
        return QRL_ERR_INVALID;
    *n = 0;
    if (max == 0)
        return QRL_OK;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_PASSKEY_LIST, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, account_id, &brc);
    bind_i64(s, 2, limit_of(max), &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "passkey_list");
    while ((src = sqlite3_step(s)) == SQLITE_ROW && k < max) {
        if ((rc = read_passkey(s, &out[k])) != QRL_OK)
            break;
        k++;
    }
    if (rc == QRL_OK && src != SQLITE_DONE && src != SQLITE_ROW)
        rc = db_fail(c, src, "passkey_list");
    sqlite3_reset(s);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

READ_METHOD(passkey_list,
            (qrl_store * st, int64_t account_id, qrl_passkey_rec *out, size_t max, size_t *n),
            (st, account_id, out, max, n))

static qrl_err passkey_get_r(qrl_store *st, const unsigned char *cred_id, size_t cred_id_len,
                             qrl_passkey_rec *out)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    qrl_err rc;

    if (out == NULL || cred_id == NULL || cred_id_len == 0 || cred_id_len > QRL_MAX_CRED_ID)
        return QRL_ERR_INVALID;
    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_PASSKEY_GET, &s)) != QRL_OK)
        return rc;
    bind_blob(s, 1, cred_id, cred_id_len, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "passkey_get");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        rc = read_passkey(s, out);
    else
        rc = src == SQLITE_DONE ? QRL_ERR_NOT_FOUND : db_fail(c, src, "passkey_get");
    sqlite3_reset(s);
    return rc;
}

READ_METHOD(passkey_get,
            (qrl_store * st, const unsigned char *cred_id, size_t cred_id_len,
             qrl_passkey_rec *out),
            (st, cred_id, cred_id_len, out))

static qrl_err passkey_use_w(qrl_store *st, int64_t id, uint32_t old_count, uint32_t new_count,
                             int64_t now_ms)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    qrl_err rc;

    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_PASSKEY_USE, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, old_count, &brc);
    bind_i64(s, 3, new_count, &brc);
    bind_i64(s, 4, now_ms, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "passkey_use");
    if ((rc = stmt_run(c, s, "passkey_use")) != QRL_OK || sqlite3_changes(c->db) == 1)
        return rc;
    /* No row changed. This runs on the writer, which alone writes, so the row read now is the
     * one the UPDATE saw: it tells a lost race (or a stale counter) from a missing passkey. */
    if ((rc = stmt_get(c, ST_PASSKEY_EXISTS, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "passkey_use");
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src == SQLITE_ROW)
        return QRL_ERR_CONFLICT;
    return src == SQLITE_DONE ? QRL_ERR_NOT_FOUND : db_fail(c, src, "passkey_use");
}

static qrl_err passkey_delete_w(qrl_store *st, int64_t account_id, int64_t id)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if ((rc = store_conn(st, &c)) != QRL_OK || (rc = stmt_get(c, ST_PASSKEY_DELETE, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, account_id, &brc);
    if (brc != SQLITE_OK)
        return db_fail(c, brc, "passkey_delete");
    rc = stmt_run(c, s, "passkey_delete");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}

/* --- group commit ----------------------------------------------------------------------------
 *
 * Every write goes through one writer thread that runs whatever writes are queued as one
 * transaction and commits them together: one fsync of the WAL makes a whole batch durable. A
 * caller blocks until the commit of its batch, so a write is on disk before the answer, as
 * store.h promises, but many writes share the cost of one flush (3 ms on the machines we
 * measured; a fsync per write would cap a server at ~300 durable writes a second).
 *
 * Each write keeps its own atomicity inside the batch: tx_begin()/tx_end() become a savepoint
 * on the writer's connection, and single statements are atomic by themselves. A batch that only
 * holds writes that need not survive a power loss (new login requests, last-seen times, rate
 * counters, sweeps) commits lazily: walbuf writes its frames to the WAL but skips the fsync
 * (qrl__walbuf_set_lazy). Still safe against kill -9, and made power-safe by the next durable
 * commit, whose fsync of the WAL covers every frame written before it. (This used to switch
 * the connection to synchronous=NORMAL, which walbuf must never see: walbuf.h.)
 *
 * Durable batches are pipelined: the writer commits them lazily as well and hands their ops to
 * the syncer thread, which fdatasyncs the WAL and only then wakes them. One fdatasync covers
 * every batch committed before it started, and the writer runs the next batch meanwhile
 * instead of leaving the core idle during the flush. Callers still hear of a durable write only
 * once it is on disk; other connections may read it between its commit and the flush, as they
 * read lazy writes (docs/architecture.md says why nothing anyone is told rests on that). */

/* Most writes taken into one transaction. Bounds how long the first of them waits. */
#define BATCH_MAX 1024

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
    rc = tx_end(c, 1);
    (void)qrl__walbuf_set_lazy(c->db, 0);
    return rc;
}

/* Runs one batch on the writer's connection, committing it with an fsync only when `durable`.
 * Sets every op's rc; returns the batch's (not QRL_OK: nothing of it was committed). */
static qrl_err run_batch(struct conn *c, struct wop *batch, int durable)
{
    qrl_err rc = exec_id(c, ST_BEGIN, "begin");

    if (rc == QRL_OK) {
        c->in_batch = 1;
        for (struct wop *w = batch; w != NULL; w = w->next) {
            w->rc = w->fn(w->arg);
            /* Some failures (disk full, I/O error) make SQLite roll the whole transaction
             * back: then nothing of this batch will be committed. */
            if (sqlite3_get_autocommit(c->db)) {
                rc = QRL_ERR_STORE;
                break;
            }
        }
        c->in_batch = 0;
        if (rc == QRL_OK)
            rc = commit_batch(c, durable);
        else
            tx_end(c, 0);
    }
    for (struct wop *w = batch; w != NULL; w = w->next)
        if (rc != QRL_OK)
            w->rc = rc;
    return rc;
}

/* Process-wide count of the syncer's fdatasync calls (store_sqlite_diag.h). */
static _Atomic uint64_t wal_syncs;

uint64_t qrl__sqlite_wal_syncs(void)
{
    return wal_syncs;
}

/* Test holds (store_sqlite_diag.h): while set, the writer takes no batch and the syncer starts
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

/* Wakes the caller of one op (its batch is committed, and synced if it had to be). */
static void wop_wake(struct wop *w)
{
    if (w->fiber != NULL)
        qrl_fiber_wake(w->fiber);
    else
        sem_post(&w->done);
}

/* Wakes the callers of a list of ops, the last queued first. A server thread that deferred
 * several requests in one pass of its event loop waits (if at all) for the first of them
 * (server.c, wait_deferred); waking that one last means its other requests are done by the
 * time it runs again: one wake-up of the thread per batch instead of one per request. */
static void wake_ops(struct wop *list)
{
    struct wop *rev = NULL;

    for (struct wop *w = list, *next; w != NULL; w = next) {
        next = w->next;
        w->next = rev;
        rev = w;
    }
    for (struct wop *w = rev, *next; w != NULL; w = next) {
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
        int ok;

        while (s->shead == NULL && !s->sstop)
            pthread_cond_wait(&s->sync_cv, &s->wmu);
        if (s->shead == NULL)
            break;
        ops = s->shead;
        s->shead = s->stail = NULL;
        pthread_mutex_unlock(&s->wmu);
        wait_unheld(&hold_syncer);
        ok = fdatasync(s->sync_fd) == 0;
        if (ok) {
            wal_syncs++;
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
            log_db(db, "checkpoint");
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
    qrl_err rc = conn_open(s->path, &c, NULL, 0);

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
                log_db(c->db, "checkpoint");
        }
        pthread_mutex_lock(&s->wmu);
    }
    pthread_mutex_unlock(&s->wmu);
    conn_close(c);
    return NULL;
}

static void *writer_main(void *arg)
{
    sqlite_store *s = arg;
    struct conn *c = NULL;
    qrl_err open_rc;

    writer_of = s;
    open_rc = conn_get(s, &c);

    if (open_rc == QRL_OK)
        sqlite3_wal_hook(c->db, wal_hook, s);

    pthread_mutex_lock(&s->wmu);
    for (;;) {
        struct wop *batch, *last;
        size_t n = 1;

        if (s->whead == NULL && !s->wstop) {
            while (s->whead == NULL && !s->wstop)
                pthread_cond_wait(&s->wwork, &s->wmu);
            /* Woken by the first write of a new batch: let the thread that queued it (on this
             * core, when the server shares one) run to the end of its pass first, so that the
             * writes of its other requests join this batch instead of each waking the writer
             * again. Where nothing else is runnable this returns at once. */
            pthread_mutex_unlock(&s->wmu);
            sched_yield();
            pthread_mutex_lock(&s->wmu);
        }
        if (s->whead == NULL)
            break;
        if (hold_writer) {
            pthread_mutex_unlock(&s->wmu);
            wait_unheld(&hold_writer);
            pthread_mutex_lock(&s->wmu);
        }
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

            if (durable && !s->sync_tried && s->syncer_started)
                sync_open(s, c);
            pthread_mutex_lock(&s->wmu);
            piped = durable && s->sync_fd >= 0 && !s->sync_failed;
            pthread_mutex_unlock(&s->wmu);
            /* A durable batch is committed without its fsync and handed to the syncer: the
             * writer goes on with the next batch while the disk flushes this one. */
            if (run_batch(c, batch, durable && !piped) == QRL_OK && piped) {
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
    if (hold_writer)
        held_queued++;
    pthread_mutex_lock(&s->wmu);
    if (s->wtail != NULL)
        s->wtail->next = w;
    else
        s->whead = w;
    s->wtail = w;
    pthread_cond_signal(&s->wwork);
    pthread_mutex_unlock(&s->wmu);
}

/* Queues a write and waits until its batch is committed. A caller on a fiber (the server's
 * request handlers) parks its fiber instead of blocking its thread (include/qrlogin/fiber.h). */
static qrl_err submit(qrl_store *st, qrl_err (*fn)(void *), void *arg, int durable)
{
    sqlite_store *s = (sqlite_store *)st;
    struct wop w = {.fn = fn, .arg = arg, .durable = durable, .fiber = qrl_fiber_self()};

    if (s == NULL)
        return QRL_ERR_INVALID;
    /* The writer itself never queues (a write calling a write would wait for itself). */
    if (pthread_equal(pthread_self(), s->writer))
        return fn(arg);
    /* A write ends this thread's read scope for good (store.h): its snapshot must not outlive
     * the wait, and the reads after the write must see it. */
    if (scope.s == s && scope.owner == w.fiber)
        scope_close();
    if (w.fiber != NULL) {
        enqueue(s, &w);
        /* Back here after the writer's qrl_fiber_wake. A lazy write waits for one commit
         * without a flush, which its owner may rather wait for on its thread (server.c). */
        if (durable)
            qrl_fiber_park();
        else
            qrl_fiber_park_brief();
        return w.rc;
    }
    if (sem_init(&w.done, 0, 0) != 0)
        return QRL_ERR_NOMEM;
    enqueue(s, &w);
    while (sem_wait(&w.done) != 0 && errno == EINTR)
        ;
    sem_destroy(&w.done);
    return w.rc;
}

/* Thunks: each packs one write method's arguments for the writer thread. */
#define DURABLE 1
#define LAZY 0

struct a_account {
    qrl_store *st;
    qrl_account_rec *acc;
    int64_t id;
    const char *str;
};
static qrl_err t_account_create(void *p)
{
    struct a_account *a = p;
    return account_create_w(a->st, a->acc);
}
static qrl_err account_create(qrl_store *st, qrl_account_rec *acc)
{
    struct a_account a = {.st = st, .acc = acc};
    return submit(st, t_account_create, &a, DURABLE);
}
static qrl_err t_account_set_password(void *p)
{
    struct a_account *a = p;
    return account_set_password_w(a->st, a->id, a->str);
}
static qrl_err account_set_password(qrl_store *st, int64_t id, const char *pw_hash)
{
    struct a_account a = {.st = st, .id = id, .str = pw_hash};
    return submit(st, t_account_set_password, &a, DURABLE);
}

struct a_device {
    qrl_store *st;
    qrl_device_rec *dev;
    qrl_token_rec *tok;
    size_t ntok;
    int64_t account_id, device_id, now_ms;
    const char *address;
    const unsigned char *pubkey;
};
static qrl_err t_device_create(void *p)
{
    struct a_device *a = p;
    return device_create_w(a->st, a->dev, a->tok, a->ntok);
}
static qrl_err device_create(qrl_store *st, qrl_device_rec *dev, qrl_token_rec *tok, size_t ntok)
{
    struct a_device a = {.st = st, .dev = dev, .tok = tok, .ntok = ntok};
    return submit(st, t_device_create, &a, DURABLE);
}
static qrl_err t_device_touch(void *p)
{
    struct a_device *a = p;
    return device_touch_w(a->st, a->device_id, a->now_ms, a->address);
}
static qrl_err device_touch(qrl_store *st, int64_t device_id, int64_t now_ms, const char *address)
{
    struct a_device a = {.st = st, .device_id = device_id, .now_ms = now_ms, .address = address};
    return submit(st, t_device_touch, &a, LAZY);
}
static qrl_err t_device_revoke(void *p)
{
    struct a_device *a = p;
    return device_revoke_w(a->st, a->account_id, a->device_id, a->now_ms);
}
static qrl_err device_revoke(qrl_store *st, int64_t account_id, int64_t device_id, int64_t now_ms)
{
    struct a_device a = {
        .st = st, .account_id = account_id, .device_id = device_id, .now_ms = now_ms};
    return submit(st, t_device_revoke, &a, DURABLE);
}
static qrl_err t_device_set_pubkey(void *p)
{
    struct a_device *a = p;
    return device_set_pubkey_w(a->st, a->account_id, a->device_id, a->pubkey);
}
static qrl_err device_set_pubkey(qrl_store *st, int64_t account_id, int64_t device_id,
                                 const unsigned char pubkey[QRL_PUBKEY_BYTES])
{
    struct a_device a = {
        .st = st, .account_id = account_id, .device_id = device_id, .pubkey = pubkey};
    return submit(st, t_device_set_pubkey, &a, DURABLE);
}

struct a_token {
    qrl_store *st;
    const qrl_token_rec *tok;
    const qrl_hash *h;
    int64_t now_ms;
    qrl_token_rec *new_tok;
    size_t n;
    qrl_token_rec *old_out;
};
static qrl_err t_token_insert(void *p)
{
    struct a_token *a = p;
    return token_insert_w(a->st, a->tok);
}
static qrl_err token_insert(qrl_store *st, const qrl_token_rec *tok)
{
    struct a_token a = {.st = st, .tok = tok};
    return submit(st, t_token_insert, &a, DURABLE);
}
static qrl_err t_token_rotate(void *p)
{
    struct a_token *a = p;
    return token_rotate_w(a->st, a->h, a->now_ms, a->new_tok, a->n, a->old_out);
}
static qrl_err token_rotate(qrl_store *st, const qrl_hash *old, int64_t now_ms,
                            qrl_token_rec *new_tok, size_t n, qrl_token_rec *old_out)
{
    struct a_token a = {
        .st = st, .h = old, .now_ms = now_ms, .new_tok = new_tok, .n = n, .old_out = old_out};
    return submit(st, t_token_rotate, &a, DURABLE);
}
static qrl_err t_token_revoke(void *p)
{
    struct a_token *a = p;
    return token_revoke_w(a->st, a->h, a->now_ms);
}
static qrl_err token_revoke(qrl_store *st, const qrl_hash *h, int64_t now_ms)
{
    struct a_token a = {.st = st, .h = h, .now_ms = now_ms};
    return submit(st, t_token_revoke, &a, DURABLE);
}

struct a_lr {
    qrl_store *st;
    qrl_lr_rec *lr;
    const qrl_lr_cas *cas;
    int64_t id, now_ms;
    qrl_device_rec *dev;
    qrl_token_rec *tok;
    size_t ntok;
    qrl_lr_state *state_out;
};
static qrl_err t_lr_create(void *p)
{
    struct a_lr *a = p;
    return lr_create_w(a->st, a->lr);
}
/* A new login request need not survive a power loss: the screen would get invalid_grant and
 * show a new code. It does survive kill -9. */
static qrl_err lr_create(qrl_store *st, qrl_lr_rec *lr)
{
    struct a_lr a = {.st = st, .lr = lr};
    return submit(st, t_lr_create, &a, LAZY);
}
static qrl_err t_lr_transition(void *p)
{
    struct a_lr *a = p;
    return lr_transition_w(a->st, a->cas);
}
static qrl_err lr_transition(qrl_store *st, const qrl_lr_cas *cas)
{
    struct a_lr a = {.st = st, .cas = cas};
    /* A claim or an expiry decides nothing (store.h): lazy, like the request's creation. */
    int durable = cas == NULL || (cas->to != QRL_LR_SCANNED && cas->to != QRL_LR_EXPIRED);
    return submit(st, t_lr_transition, &a, durable ? DURABLE : LAZY);
}
static qrl_err t_lr_redeem(void *p)
{
    struct a_lr *a = p;
    return lr_redeem_w(a->st, a->id, a->now_ms, a->dev, a->tok, a->ntok, a->state_out);
}
static qrl_err lr_redeem(qrl_store *st, int64_t id, int64_t now_ms, qrl_device_rec *dev,
                         qrl_token_rec *tok, size_t ntok, qrl_lr_state *state_out)
{
    struct a_lr a = {.st = st,
                     .id = id,
                     .now_ms = now_ms,
                     .dev = dev,
                     .tok = tok,
                     .ntok = ntok,
                     .state_out = state_out};
    return submit(st, t_lr_redeem, &a, DURABLE);
}

struct a_approve_redeem {
    qrl_store *st;
    const qrl_lr_cas *cas;
    qrl_device_rec *dev;
    qrl_token_rec *tok;
    size_t ntok;
};
static qrl_err t_lr_approve_redeem(void *p)
{
    struct a_approve_redeem *a = p;
    return lr_approve_redeem_w(a->st, a->cas, a->dev, a->tok, a->ntok);
}
static qrl_err lr_approve_redeem(qrl_store *st, const qrl_lr_cas *cas, qrl_device_rec *dev,
                                 qrl_token_rec *tok, size_t ntok)
{
    struct a_approve_redeem a = {.st = st, .cas = cas, .dev = dev, .tok = tok, .ntok = ntok};
    return submit(st, t_lr_approve_redeem, &a, DURABLE);
}

struct a_misc {
    qrl_store *st;
    const char *key;
    int64_t now_ms, window_ms;
    int64_t *count;
};
static qrl_err t_ratelimit_hit(void *p)
{
    struct a_misc *a = p;
    return ratelimit_hit_w(a->st, a->key, a->now_ms, a->window_ms, a->count);
}
/* Counting failures need not survive a power loss; it does survive kill -9. */
static qrl_err ratelimit_hit(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                             int64_t *count)
{
    struct a_misc a = {
        .st = st, .key = key, .now_ms = now_ms, .window_ms = window_ms, .count = count};
    return submit(st, t_ratelimit_hit, &a, LAZY);
}
static qrl_err t_sweep(void *p)
{
    struct a_misc *a = p;
    return sweep_w(a->st, a->now_ms, a->window_ms);
}
static qrl_err sweep(qrl_store *st, int64_t now_ms, int64_t keep_ms)
{
    struct a_misc a = {.st = st, .now_ms = now_ms, .window_ms = keep_ms};
    return submit(st, t_sweep, &a, LAZY);
}

struct a_passkey {
    qrl_store *st;
    qrl_passkey_rec *pk;
    int64_t account_id, id, now_ms;
    uint32_t old_count, new_count;
};
static qrl_err t_passkey_add(void *p)
{
    struct a_passkey *a = p;
    return passkey_add_w(a->st, a->pk);
}
static qrl_err passkey_add(qrl_store *st, qrl_passkey_rec *pk)
{
    struct a_passkey a = {.st = st, .pk = pk};
    return submit(st, t_passkey_add, &a, DURABLE);
}
static qrl_err t_passkey_use(void *p)
{
    struct a_passkey *a = p;
    return passkey_use_w(a->st, a->id, a->old_count, a->new_count, a->now_ms);
}
/* Durable: a counter that went back after a power loss would accept a replayed assertion's
 * counter once more (W3C WebAuthn Level 2 section 6.1.1). */
static qrl_err passkey_use(qrl_store *st, int64_t id, uint32_t old_count, uint32_t new_count,
                           int64_t now_ms)
{
    struct a_passkey a = {
        .st = st, .id = id, .old_count = old_count, .new_count = new_count, .now_ms = now_ms};
    return submit(st, t_passkey_use, &a, DURABLE);
}
static qrl_err t_passkey_delete(void *p)
{
    struct a_passkey *a = p;
    return passkey_delete_w(a->st, a->account_id, a->id);
}
static qrl_err passkey_delete(qrl_store *st, int64_t account_id, int64_t id)
{
    struct a_passkey a = {.st = st, .account_id = account_id, .id = id};
    return submit(st, t_passkey_delete, &a, DURABLE);
}

static const qrl_store_methods sqlite_methods = {
    .version = QRL_STORE_VERSION,
    .name = "sqlite",
    .close = store_close,
    .account_create = account_create,
    .account_get = account_get,
    .account_by_name = account_by_name,
    .account_set_password = account_set_password,
    .device_create = device_create,
    .device_get = device_get,
    .device_list = device_list,
    .device_touch = device_touch,
    .device_revoke = device_revoke,
    .token_insert = token_insert,
    .token_lookup = token_lookup,
    .token_rotate = token_rotate,
    .token_revoke = token_revoke,
    .lr_create = lr_create,
    .lr_get = lr_get,
    .lr_find = lr_find,
    .lr_transition = lr_transition,
    .lr_redeem = lr_redeem,
    .lr_by_device = lr_by_device,
    .ratelimit_hit = ratelimit_hit,
    .ratelimit_peek = ratelimit_peek,
    .sweep = sweep,
    .device_set_pubkey = device_set_pubkey,
    .lr_approve_redeem = lr_approve_redeem,
    .token_auth = token_auth,
    .read_begin = read_begin,
    .read_end = read_end,
    .passkey_add = passkey_add,
    .passkey_list = passkey_list,
    .passkey_get = passkey_get,
    .passkey_use = passkey_use,
    .passkey_delete = passkey_delete,
};

qrl_err qrl_store_sqlite_open(const char *path, qrl_store **out, char *errbuf, size_t errlen)
{
    sqlite_store *s = NULL;
    struct conn *c = NULL;
    int have_key = 0, have_lock = 0;
    qrl_err rc = QRL_ERR_NOMEM;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (out == NULL || path == NULL)
        return QRL_ERR_INVALID;
    *out = NULL;
    /* Every thread opens its own connection to `path`: an in-memory or temporary database
     * would give each thread a different, private database. */
    if (path[0] == '\0' || strcmp(path, ":memory:") == 0) {
        set_errbuf(errbuf, errlen, "a database file is required (not in-memory or temporary)");
        return QRL_ERR_INVALID;
    }
    if (!sqlite3_threadsafe()) {
        set_errbuf(errbuf, errlen, "libsqlite3 was built without thread support");
        return QRL_ERR_STORE;
    }
    if (qrl__walbuf_register() != SQLITE_OK) {
        set_errbuf(errbuf, errlen, "cannot register the SQLite VFS " QRL__WALBUF_VFS);
        return QRL_ERR_STORE;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->path = strdup(path)) == NULL)
        goto out;
    if (pthread_key_create(&s->key, NULL) != 0)
        goto out;
    have_key = 1;
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        goto out;
    if (pthread_mutex_init(&s->rmu, NULL) != 0) {
        pthread_mutex_destroy(&s->lock);
        goto out;
    }
    pthread_cond_init(&s->rfree_cv, NULL);
    pthread_mutex_init(&s->uc.mu, NULL);
    have_lock = 1;
    s->base.m = &sqlite_methods;

    /* The opening thread's connection checks that the file is usable and migrates it. */
    if ((rc = conn_open(path, &c, errbuf, errlen)) != QRL_OK ||
        (rc = schema_migrate(c, path, errbuf, errlen)) != QRL_OK)
        goto out;
    if (pthread_setspecific(s->key, c) != 0) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    s->conns = c;
    c = NULL;
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
        set_errbuf(errbuf, errlen, "cannot start the writer thread");
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    s->writer_started = 1;
    pthread_cond_init(&s->ckpt_cv, NULL);
    /* Without the checkpointer the WAL only grows until close: a real failure, but not one
     * that loses data, so the store still opens. */
    s->ckpt_started = pthread_create(&s->ckpt, NULL, ckpt_main, s) == 0;
    if (!s->ckpt_started)
        log_db(NULL, "cannot start the checkpoint thread");
    *out = &s->base;
    s = NULL;
    rc = QRL_OK;
out:
    conn_close(c);
    if (s != NULL) {
        for (struct conn *o = s->conns, *next; o != NULL; o = next) {
            next = o->next;
            conn_close(o);
        }
        if (have_key)
            pthread_key_delete(s->key);
        if (have_lock) {
            pthread_mutex_destroy(&s->uc.mu);
            pthread_cond_destroy(&s->rfree_cv);
            pthread_mutex_destroy(&s->rmu);
            pthread_mutex_destroy(&s->lock);
        }
        free(s->path);
        free(s);
    }
    if (rc == QRL_ERR_NOMEM && errbuf != NULL && errlen > 0 && errbuf[0] == '\0')
        set_errbuf(errbuf, errlen, "out of memory");
    return rc;
}
