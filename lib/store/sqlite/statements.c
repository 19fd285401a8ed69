/* SPDX-License-Identifier: MIT */
/*
 * The SQL of the SQLite store, and what runs it: every statement the store prepares (one
 * array indexed by enum stmt_id), the column lists of the SELECTs with the row decoders that
 * read them back into records, the mapping of SQLite errors to qrl_err, and the transaction
 * helpers every method body uses.
 *
 * Why one file: a column list, the statements that select it and the decoder that reads it by
 * position must change together; kept side by side, a record field added means one edit here
 * plus the INSERT. Statements are prepared once per connection (SQLITE_PREPARE_PERSISTENT), on
 * first use, and kept in the connection's array (stmt_get() in sqlite_internal.h), so a method
 * costs no parsing after warm-up.
 *
 * Backend failures are logged to stderr as "qrlogin: sqlite: <message>". SQLite's messages never
 * contain bound values, so no secret or hash can reach the log.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

/* States are stored as numbers and appear as literals in the SQL below. */
_Static_assert(QRL_LR_PENDING == 0 && QRL_LR_SCANNED == 1 && QRL_LR_APPROVED == 2 &&
                   QRL_LR_REDEEMED == 3 && QRL_LR_DENIED == 4 && QRL_LR_EXPIRED == 5,
               "login request states are stored as numbers used in the SQL");

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
    "account_id, approving_device_id, redeemed_device_id, nonce, device_platform, dpop_jkt"
#define PASSKEY_COLS                                                                               \
    "id, account_id, cred_id, alg, pubkey, sign_count, name, created_ms, last_used_ms"
/* A notice, then its device's DEVICE_COLS (from NOTICE_DEVICE_COL on). */
#define NOTICE_COLS                                                                                \
    "n.id, n.account_id, n.device_id, n.created_ms, n.platform, n.kind, n.reason, n.screen_name, " \
    "n.screen_kind, n.screen_address, d.id, d.account_id, d.name, d.kind, d.address, "             \
    "d.created_ms, d.last_seen_ms, d.revoked_ms, d.pubkey"

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
                         " last_seen_ms, revoked_ms, pubkey)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6)",
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
                     " approving_device_id, redeemed_device_id, id, device_platform, dpop_jkt)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                     " ?16, ?17, ?18, ?19, ?20)",
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
    /* Rate limits as GCRA (rate_limits.c): start_ms holds the key's theoretical arrival time,
     * hits stays 0. ?2 now, ?3 the emission interval, ?4 the window. An attempt is taken only
     * when the arrival time it leaves is within the window: then a row comes back. */
    [ST_RL_TAKE] = "INSERT INTO rate_limits (key, start_ms, window_ms, hits)"
                   " VALUES (?1, ?2 + ?3, ?4, 0)"
                   " ON CONFLICT (key) DO UPDATE SET start_ms = max(start_ms, ?2) + ?3,"
                   " window_ms = ?4 WHERE max(start_ms, ?2) + ?3 - ?2 <= ?4 RETURNING start_ms",
    [ST_RL_GIVE] = "UPDATE rate_limits SET start_ms = max(start_ms - ?3, ?2) WHERE key = ?1",
    /* ?3 bounds the primary key (qrl__sqlite_sweep_w): a range, not a scan of the whole table. */
    [ST_SWEEP_LR] = "DELETE FROM login_requests WHERE id < ?3 AND expires_ms < ?1 - ?2",
    /* Requests that expired undecided (pending, scanned, expired) are of no use to anyone: gone
     * a minute after their expiry (time for their screens' last polls to hear "expired"), so
     * that a flood of device authorizations cannot grow the table for a day. ?3 bounds the
     * primary key as above. */
    [ST_SWEEP_LR_UNDECIDED] = "DELETE FROM login_requests WHERE id < ?3"
                              " AND expires_ms < ?1 - 60000 AND state IN (0, 1, 5)",
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
    [ST_NOTICE_INSERT] = "INSERT INTO notices (id, account_id, device_id, created_ms, platform,"
                         " kind, reason, screen_name, screen_kind, screen_address)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    /* Their acknowledgements go with them (ON DELETE CASCADE). */
    [ST_NOTICE_PRUNE] = "DELETE FROM notices WHERE account_id = ?1 AND created_ms < ?2",
    /* store.h's notice_list: ?2 is the device asking. A blocked request (kind 2) is told to
     * every device of the account, its stopped phone too, revoked since or not; a new device
     * (kind 1) to the others while it is linked. */
    [ST_NOTICE_LIST] = "SELECT " NOTICE_COLS " FROM notices n JOIN devices d ON d.id = n.device_id"
                       " WHERE n.account_id = ?1 AND n.created_ms >= ?3"
                       " AND (n.kind = 2 OR (n.device_id != ?2 AND d.revoked_ms = 0))"
                       " AND NOT EXISTS (SELECT 1 FROM notice_acks a"
                       " WHERE a.notice_id = n.id AND a.device_id = ?2)"
                       " ORDER BY n.id DESC LIMIT ?4",
    [ST_NOTICE_GET] = "SELECT " NOTICE_COLS " FROM notices n JOIN devices d ON d.id = n.device_id"
                      " WHERE n.id = ?1 AND n.account_id = ?2",
    [ST_NOTICE_EXISTS] = "SELECT 1 FROM notices WHERE id = ?1 AND account_id = ?2",
    [ST_NOTICE_ACK] = "INSERT INTO notice_acks (notice_id, device_id, acked_ms)"
                      " VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    /* challenge_put's room for a new challenge of device ?1 at time ?2: its expired ones go,
     * and its live ones but the ?3 that expire last. */
    [ST_CHAL_TRIM] = "DELETE FROM webauthn_challenges WHERE device_id = ?1 AND (expires_ms <= ?2"
                     " OR hash NOT IN (SELECT hash FROM webauthn_challenges WHERE device_id = ?1"
                     " AND expires_ms > ?2 ORDER BY expires_ms DESC, hash DESC LIMIT ?3))",
    [ST_CHAL_INSERT] = "INSERT INTO webauthn_challenges (hash, account_id, device_id, lr_id,"
                       " purpose, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* One statement: the row is gone once it has been returned, so a second take finds none. */
    [ST_CHAL_TAKE] = "DELETE FROM webauthn_challenges WHERE hash = ?1"
                     " RETURNING account_id, device_id, lr_id, purpose, expires_ms",
    [ST_SWEEP_CHAL] = "DELETE FROM webauthn_challenges WHERE expires_ms <= ?1",
};

/* --- small helpers ------------------------------------------------------------------------ */

void qrl__sqlite_log_db(sqlite3 *db, const char *what)
{
    fprintf(stderr, "qrlogin: sqlite: %s: %s\n", what,
            db != NULL ? sqlite3_errmsg(db) : "out of memory");
}

/* Maps an SQLite result code (extended codes are on) to a qrl_err, logging real failures. */
qrl_err qrl__sqlite_db_fail(struct conn *c, int rc, const char *what)
{
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return QRL_ERR_EXISTS;
    qrl__sqlite_log_db(c->db, what);
    /* A database locked by another process or a full disk passes: the client is told to
     * come back (503 with Retry-After), not that the server is broken. */
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return QRL_ERR_NOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
        return QRL_ERR_BUSY;
    default:
        return QRL_ERR_STORE;
    }
}

/* A value read back does not fit its record: someone else wrote the file, or it is damaged. */
qrl_err qrl__sqlite_bad_row(const char *what)
{
    fprintf(stderr, "qrlogin: sqlite: %s: unexpected value in database\n", what);
    return QRL_ERR_STORE;
}

/* Open-time errors go to the caller's buffer, or to the log when there is none. */
void qrl__sqlite_set_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
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
qrl_err qrl__sqlite_read_account_at(sqlite3_stmt *s, int b, qrl_account_rec *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, b);
    if (col_text(s, b + 1, out->username, sizeof out->username) != 0 ||
        col_text(s, b + 2, out->display_name, sizeof out->display_name) != 0 ||
        col_text(s, b + 3, out->pw_hash, sizeof out->pw_hash) != 0)
        return qrl__sqlite_bad_row("account");
    out->created_ms = sqlite3_column_int64(s, b + 4);
    out->disabled = sqlite3_column_int(s, b + 5) != 0;
    return QRL_OK;
}

qrl_err qrl__sqlite_read_account(sqlite3_stmt *s, qrl_account_rec *out)
{
    return qrl__sqlite_read_account_at(s, 0, out);
}

qrl_err qrl__sqlite_read_device_at(sqlite3_stmt *s, int b, qrl_device_rec *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, b);
    out->account_id = sqlite3_column_int64(s, b + 1);
    if (col_text(s, b + 2, out->name, sizeof out->name) != 0 ||
        col_text(s, b + 3, out->kind, sizeof out->kind) != 0 ||
        col_text(s, b + 4, out->address, sizeof out->address) != 0)
        return qrl__sqlite_bad_row("device");
    out->created_ms = sqlite3_column_int64(s, b + 5);
    out->last_seen_ms = sqlite3_column_int64(s, b + 6);
    out->revoked_ms = sqlite3_column_int64(s, b + 7);
    if (sqlite3_column_type(s, b + 8) == SQLITE_BLOB) {
        if (sqlite3_column_bytes(s, b + 8) != QRL_PUBKEY_BYTES)
            return qrl__sqlite_bad_row("device");
        memcpy(out->pubkey, sqlite3_column_blob(s, b + 8), QRL_PUBKEY_BYTES);
        out->has_pubkey = 1;
    }
    return QRL_OK;
}

qrl_err qrl__sqlite_read_device(sqlite3_stmt *s, qrl_device_rec *out)
{
    return qrl__sqlite_read_device_at(s, 0, out);
}

qrl_err qrl__sqlite_read_token(sqlite3_stmt *s, qrl_token_rec *out)
{
    int kind;

    memset(out, 0, sizeof *out);
    kind = sqlite3_column_int(s, 1);
    if (col_hash(s, 0, &out->hash) != 0 || kind < QRL_TOKEN_ACCESS || kind > QRL_TOKEN_SESSION ||
        col_text(s, 7, out->client_id, sizeof out->client_id) != 0 ||
        col_text(s, 8, out->scope, sizeof out->scope) != 0)
        return qrl__sqlite_bad_row("token");
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

qrl_err qrl__sqlite_read_lr(sqlite3_stmt *s, qrl_lr_rec *out)
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
        return qrl__sqlite_bad_row("login request");
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
        col_text(s, 19, out->device_platform, sizeof out->device_platform) != 0 ||
        col_text(s, 20, out->dpop_jkt, sizeof out->dpop_jkt) != 0)
        return qrl__sqlite_bad_row("login request");
    return QRL_OK;
}

qrl_err qrl__sqlite_read_passkey(sqlite3_stmt *s, qrl_passkey_rec *out)
{
    int cred_len = sqlite3_column_bytes(s, 2), pk_len = sqlite3_column_bytes(s, 4);
    int64_t count = sqlite3_column_int64(s, 5);

    memset(out, 0, sizeof *out);
    if (sqlite3_column_type(s, 2) != SQLITE_BLOB || sqlite3_column_type(s, 4) != SQLITE_BLOB ||
        cred_len < 1 || (size_t)cred_len > sizeof out->cred_id || pk_len < 1 ||
        (size_t)pk_len > sizeof out->pubkey || count < 0 || count > UINT32_MAX ||
        col_text(s, 6, out->name, sizeof out->name) != 0)
        return qrl__sqlite_bad_row("passkey");
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

qrl_err qrl__sqlite_read_notice(sqlite3_stmt *s, qrl_notice_rec *out)
{
    int kind;
    qrl_err rc;

    memset(out, 0, sizeof *out);
    kind = sqlite3_column_int(s, 5);
    if (col_text(s, 4, out->platform, sizeof out->platform) != 0 ||
        (kind != QRL_NOTICE_DEVICE_LINKED && kind != QRL_NOTICE_REQUEST_BLOCKED) ||
        col_text(s, 6, out->reason, sizeof out->reason) != 0 ||
        col_text(s, 7, out->screen_name, sizeof out->screen_name) != 0 ||
        col_text(s, 8, out->screen_kind, sizeof out->screen_kind) != 0 ||
        col_text(s, 9, out->screen_address, sizeof out->screen_address) != 0)
        return qrl__sqlite_bad_row("notice");
    out->id = sqlite3_column_int64(s, 0);
    out->account_id = sqlite3_column_int64(s, 1);
    out->device_id = sqlite3_column_int64(s, 2);
    out->created_ms = sqlite3_column_int64(s, 3);
    out->kind = (qrl_notice_kind)kind;
    rc = qrl__sqlite_read_device_at(s, NOTICE_DEVICE_COL, &out->device);
    return rc;
}

/* --- statements and transactions ----------------------------------------------------------- */

/* The slow path of stmt_get() (sqlite_internal.h): the statement's first use on `c`. */
qrl_err qrl__sqlite_stmt_prepare(struct conn *c, enum stmt_id id, sqlite3_stmt **out)
{
    int rc =
        sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[id], NULL);

    if (rc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, rc, "prepare");
    *out = c->stmt[id];
    return QRL_OK;
}

/* Runs a statement that returns no row to completion. Needs no bindings or has them set. */
qrl_err qrl__sqlite_stmt_run(struct conn *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE ? QRL_OK : qrl__sqlite_db_fail(c, rc, what);
}

qrl_err qrl__sqlite_exec_id(struct conn *c, enum stmt_id id, const char *what)
{
    sqlite3_stmt *s = NULL;
    qrl_err rc = stmt_get(c, id, &s);

    return rc != QRL_OK ? rc : qrl__sqlite_stmt_run(c, s, what);
}

/* Starts the atomic unit of one store function. On the writer's connection, inside a group
 * commit, that is a savepoint of the batch transaction; elsewhere a transaction of its own. */
qrl_err qrl__sqlite_tx_begin(struct conn *c)
{
    return qrl__sqlite_exec_id(c, c->in_batch ? ST_SAVEPOINT : ST_BEGIN, "begin");
}

/* Ends the unit: keeps it when `commit`, else undoes it. A failed COMMIT is rolled back too,
 * so the connection never stays inside a transaction. */
qrl_err qrl__sqlite_tx_end(struct conn *c, int commit)
{
    qrl_err rc = QRL_OK;

    if (c->in_batch) {
        if (!commit && (rc = qrl__sqlite_exec_id(c, ST_ROLLBACK_TO, "rollback to")) != QRL_OK)
            return rc;
        return qrl__sqlite_exec_id(c, ST_RELEASE, "release");
    }
    if (commit)
        rc = qrl__sqlite_exec_id(c, ST_COMMIT, "commit");
    /* SQLite may already have rolled back by itself after some errors (e.g. SQLITE_FULL). */
    if ((!commit || rc != QRL_OK) && !sqlite3_get_autocommit(c->db))
        (void)qrl__sqlite_exec_id(c, ST_ROLLBACK, "rollback");
    return rc;
}
