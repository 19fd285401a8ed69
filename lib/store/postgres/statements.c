/* SPDX-License-Identifier: MIT */
/*
 * The SQL of the PostgreSQL store, and what runs it: every statement the store prepares (one
 * array indexed by enum pg_stmt, with the types of its parameters), the column lists of the
 * SELECTs with the row decoders that read them back into records, the mapping of PostgreSQL's
 * errors to qrl_err, and the transaction helpers the method bodies use.
 *
 * Why one file: a column list, the statements that select it and the decoder that reads it by
 * position must change together; kept side by side, a record field added means one edit here
 * plus the INSERT. Statements are prepared once per connection, on first use, and run with
 * binary parameters and binary results: no value is ever formatted into SQL, and integers,
 * hashes and keys cross the wire as their bytes.
 *
 * Three shapes recur below, each for a guarantee of store.h:
 * - a compare-and-set is "WITH u AS (UPDATE ... WHERE <condition> RETURNING id) SELECT id FROM
 *   u": the UPDATE decides (one winner: PostgreSQL re-checks the condition on the newest version
 *   of a row a racing transaction changed), and the rows returned say whether it did. Such a
 *   statement is marked NOTIFY: qrl__pg_run hands the ids it returned to qrl__pg_changed, and
 *   the node's notifier tells every node once the change has committed (notify.c), only if it
 *   did. No statement calls pg_notify itself: a transaction that notifies holds PostgreSQL's
 *   notification lock, one for the whole cluster, from its commit until its WAL is flushed;
 * - a lazy write (store.h: may be lost to a power loss, never to a crash of the process) starts
 *   with LAZY, which turns synchronous_commit off for its own transaction only: PostgreSQL then
 *   acknowledges the commit before its WAL reaches the disk, and flushes it within a moment.
 *   Everything else commits with synchronous_commit on;
 * - a counter (rate limits) is one INSERT ... ON CONFLICT DO UPDATE ... RETURNING, so its
 *   read-modify-write is one atomic statement whichever node runs it.
 *
 * Errors are logged as "qrlogin: postgres: <what>: <message> (SQLSTATE <code>)" with the
 * server's primary message only: its DETAIL quotes the values of a violated key, which may be a
 * hash, so it never reaches the log.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg_internal.h"

/* States are stored as numbers and appear as literals in the SQL below. */
_Static_assert(QRL_LR_PENDING == 0 && QRL_LR_SCANNED == 1 && QRL_LR_APPROVED == 2 &&
                   QRL_LR_REDEEMED == 3 && QRL_LR_DENIED == 4 && QRL_LR_EXPIRED == 5,
               "login request states are stored as numbers used in the SQL");

/* Column lists shared by the SELECTs and the qrl__pg_read_*() functions that decode them. */
#define ACCOUNT_COLS "id, username, display_name, pw_hash, created_ms, disabled"
#define DEVICE_COLS                                                                                \
    "id, account_id, name, kind, address, created_ms, last_seen_ms, revoked_ms, pubkey"
#define TOKEN_COLS                                                                                 \
    "t.hash, t.kind, t.device_id, t.created_ms, t.expires_ms, t.used_ms, t.revoked_ms, "           \
    "t.client_id, t.scope, d.account_id, d.revoked_ms <> 0, a.disabled"
#define TOKEN_FROM                                                                                 \
    " FROM tokens t JOIN devices d ON d.id = t.device_id JOIN accounts a ON a.id = d.account_id"
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
#define NOTICE_DEVICE_COL 10
#define NOTICE_FROM " FROM notices n JOIN devices d ON d.id = n.device_id"

/* The prefix of a lazy write: its transaction commits without waiting for the WAL flush.
 * set_config(..., true) lasts until the end of the statement's own transaction, and the
 * statement must name `lazy` in a FROM for the CTE to run. */
#define LAZY "WITH lazy AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) "

/* The ids of the login requests u changed: NOTIFY statements (below) return them. */
#define NOTIFY_U " SELECT id FROM u"

struct stmt_def {
    const char *sql;
    const char *types; /* one letter per parameter: i int8, t text, b bytea */
    /* NOTIFY: column 0 of every row returned is a change id (store.h, set_notify) that every
     * node is told of once the statement's transaction commits (qrl__pg_changed). */
    int notify;
};
#define NOTIFY 1

static const struct stmt_def stmt_def[PST_COUNT] = {
    [PST_ACCOUNT_INSERT] = {"INSERT INTO accounts (username, display_name, pw_hash, created_ms,"
                            " disabled) VALUES ($1, $2, $3, $4, $5 <> 0) RETURNING id",
                            "tttii", 0},
    [PST_ACCOUNT_GET] = {"SELECT " ACCOUNT_COLS " FROM accounts WHERE id = $1", "i", 0},
    [PST_ACCOUNT_BY_NAME] = {"SELECT " ACCOUNT_COLS " FROM accounts WHERE username = $1", "t", 0},
    [PST_ACCOUNT_SET_PW] = {"UPDATE accounts SET pw_hash = $2 WHERE id = $1", "it", 0},

    /* $6: a screen's DPoP key (store.h, qrl_device_rec), NULL for everyone else. */
    [PST_DEVICE_INSERT] = {"INSERT INTO devices (account_id, name, kind, address, created_ms,"
                           " last_seen_ms, revoked_ms, pubkey)"
                           " VALUES ($1, $2, $3, $4, $5, $5, 0, $6) RETURNING id",
                           "itttib", 0},
    [PST_DEVICE_GET] = {"SELECT " DEVICE_COLS " FROM devices WHERE id = $1", "i", 0},
    [PST_DEVICE_LIST] = {"SELECT " DEVICE_COLS " FROM devices WHERE account_id = $1"
                         " AND revoked_ms = 0 ORDER BY created_ms, id LIMIT $2",
                         "ii", 0},
    [PST_DEVICE_TOUCH] = {LAZY "UPDATE devices SET last_seen_ms = $2,"
                               " address = coalesce($3, address) FROM lazy"
                               " WHERE id = $1 AND revoked_ms = 0",
                          "iit", 0},
    /* The device and its tokens in one statement; "-<id>" tells every node (store.h). */
    [PST_DEVICE_REVOKE] = {"WITH d AS (UPDATE devices SET revoked_ms = $3 WHERE id = $2"
                           " AND account_id = $1 AND revoked_ms = 0 RETURNING id),"
                           " t AS (UPDATE tokens SET revoked_ms = $3"
                           " WHERE device_id IN (SELECT id FROM d) AND revoked_ms = 0)"
                           " SELECT -id FROM d",
                           "iii", NOTIFY},
    [PST_DEVICE_LOCK] = {"SELECT id FROM devices WHERE id = $1 FOR NO KEY UPDATE", "i", 0},
    [PST_DEVICE_SET_PUBKEY] = {"UPDATE devices SET pubkey = $3 WHERE id = $1 AND account_id = $2"
                               " AND revoked_ms = 0",
                               "iib", 0},

    [PST_TOKEN_INSERT] = {"INSERT INTO tokens (hash, kind, device_id, created_ms, expires_ms,"
                          " used_ms, revoked_ms, client_id, scope)"
                          " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                          "biiiiiitt", 0},
    [PST_TOKEN_LOOKUP] = {"SELECT " TOKEN_COLS TOKEN_FROM " WHERE t.hash = $1", "b", 0},
    /* Rotation: the token's row is locked after its device's (pg_internal.h: lock order). */
    [PST_TOKEN_LOOKUP_LOCK] = {"SELECT " TOKEN_COLS TOKEN_FROM " WHERE t.hash = $1"
                               " FOR NO KEY UPDATE OF t",
                               "b", 0},
    [PST_TOKEN_DEVICE] = {"SELECT device_id FROM tokens WHERE hash = $1", "b", 0},
    /* TOKEN_COLS (12 columns), then ACCOUNT_COLS at column 12 and DEVICE_COLS at 18. */
    [PST_TOKEN_AUTH] =
        {"SELECT " TOKEN_COLS ", a.id, a.username, a.display_name, a.pw_hash,"
         " a.created_ms, a.disabled, d.id, d.account_id, d.name, d.kind,"
         " d.address, d.created_ms, d.last_seen_ms, d.revoked_ms, d.pubkey" TOKEN_FROM
         " WHERE t.hash = $1",
         "b", 0},
    [PST_TOKEN_SET_USED] = {"UPDATE tokens SET used_ms = $2 WHERE hash = $1 AND used_ms = 0", "bi", 0},
    /* Rewrites an already set revoked_ms with itself, so that the row count tells existence. */
    [PST_TOKEN_REVOKE] = {"UPDATE tokens SET revoked_ms = CASE WHEN revoked_ms = 0 THEN $2"
                          " ELSE revoked_ms END WHERE hash = $1",
                          "bi", 0},

    /* A taken id or a user code of a live request (the partial unique index
     * login_requests_live_code) inserts nothing: no row comes back (login_requests.c). */
    [PST_LR_INSERT] = {LAZY "INSERT INTO login_requests (id, device_code_hash, scan_hash,"
                            " user_code, client_id, scope, device_name, device_kind, address,"
                            " created_ms, expires_ms, interval_s, poll_interval_s, state,"
                            " updated_ms, claimed_device_id, account_id, approving_device_id,"
                            " redeemed_device_id, device_platform, dpop_jkt)"
                            " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13,"
                            " $14, $15, $16, $17, $18, $19, $20 FROM lazy"
                            " ON CONFLICT DO NOTHING RETURNING id",
                       "ibbttttttiiiiiiiiitt", 0},
    /* A live request holding the code but past its expiry (nobody polled it since) is moved
     * to EXPIRED, as the core would on its next read, which frees the code. */
    [PST_LR_EXPIRE_CODE] = {"WITH u AS (UPDATE login_requests SET state = 5, updated_ms = $2"
                            " WHERE user_code = $1 AND state IN (0, 1, 2) AND expires_ms <= $2"
                            " RETURNING id)" NOTIFY_U,
                            "ti", NOTIFY},
    [PST_LR_GET] = {"SELECT " LR_COLS " FROM login_requests WHERE id = $1", "i", 0},
    [PST_LR_GET_LOCK] = {"SELECT " LR_COLS " FROM login_requests WHERE id = $1 FOR UPDATE", "i", 0},
    [PST_LR_BY_CODE] = {"SELECT " LR_COLS " FROM login_requests WHERE user_code = $1"
                        " AND expires_ms > $2 ORDER BY id DESC LIMIT 1",
                        "ti", 0},
    /* The compare-and-set of store.h's lr_transition; $4 is the from_mask. A move to SCANNED or
     * EXPIRED decides nothing (store.h: a claim lost to a power loss sends the phone back to
     * scanning) and commits without waiting for the flush, as a lazy write; every other move
     * keeps the session's setting (the statement's own transaction, or the caller's). */
    [PST_LR_TRANSITION] =
        {"WITH lazy AS MATERIALIZED (SELECT set_config('synchronous_commit', CASE WHEN $2 IN"
         " (1, 5) THEN 'off' ELSE current_setting('synchronous_commit') END, true)),"
         " u AS (UPDATE login_requests SET state = $2, updated_ms = $3,"
         " claimed_device_id = CASE WHEN $5 <> 0 THEN $5 ELSE claimed_device_id END,"
         " account_id = CASE WHEN $6 <> 0 THEN $6 ELSE account_id END,"
         " approving_device_id = CASE WHEN $7 <> 0 THEN $7 ELSE approving_device_id END,"
         " nonce = coalesce($9, nonce) FROM lazy"
         " WHERE id = $1 AND (($4 >> state::int) & 1) = 1"
         " AND CASE WHEN $2 = 5 THEN expires_ms <= $3 ELSE expires_ms > $3 END"
         " AND ($8 = 0 OR claimed_device_id = $8) AND ($10 IS NULL OR nonce = $10)"
         " RETURNING id)" NOTIFY_U,
         "iiiiiiiitt", NOTIFY},
    /* No row: the account, or that device of it, does not exist. The device row is locked
     * (shared) until the redemption commits: a revocation waits for it, or came first and is
     * seen. */
    [PST_LR_APPROVER] = {"SELECT a.disabled, d.revoked_ms FROM accounts a JOIN devices d"
                         " ON d.account_id = a.id WHERE a.id = $1 AND d.id = $2 FOR SHARE OF d",
                         "ii", 0},
    [PST_LR_SET_DENIED] = {"WITH u AS (UPDATE login_requests SET state = 4, updated_ms = $2"
                           " WHERE id = $1 AND state = 2 RETURNING id)" NOTIFY_U,
                           "ii", NOTIFY},
    [PST_LR_SET_REDEEMED] = {"WITH u AS (UPDATE login_requests SET state = 3, updated_ms = $2,"
                             " redeemed_device_id = $3 WHERE id = $1 AND state = 2"
                             " RETURNING id)" NOTIFY_U,
                             "iii", NOTIFY},
    /* Redemption in one round trip: the function qrlogin_redeem (schema.c), with the device
     * and at most two tokens (login_requests.c). */
    [PST_LR_REDEEM] = {"SELECT o_outcome, o_state, o_account, o_device FROM qrlogin_redeem($1,"
                       " $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
                       " $18, $19, $20, $21, $22, $23)",
                       "iitttibbiiiiittbiiiiitt", 0},
    [PST_LR_BY_DEVICE] = {"SELECT id FROM login_requests WHERE state IN (1, 2)"
                          " AND (claimed_device_id = $1 OR approving_device_id = $1)"
                          " ORDER BY id LIMIT $2",
                          "ii", 0},
    /* RFC 8628 section 3.5 in one statement (store.h, lr_poll): $2 now, $3 exempt, $4 the
     * slack, $5 the step, $6 the ceiling. The right-hand sides of SET read the row as it was
     * before the update, so poll_slowed keeps the decision for RETURNING. */
    [PST_LR_POLL] = {LAZY "UPDATE login_requests SET"
                          " poll_slowed = ($3 = 0 AND last_poll_ms <> 0"
                          " AND $2 - last_poll_ms < poll_interval_s::bigint * 1000 - $4),"
                          " poll_interval_s = CASE WHEN $3 = 0 AND last_poll_ms <> 0"
                          " AND $2 - last_poll_ms < poll_interval_s::bigint * 1000 - $4"
                          " THEN GREATEST(poll_interval_s, LEAST(poll_interval_s + $5, $6))"
                          " ELSE poll_interval_s END,"
                          " last_poll_ms = CASE WHEN $3 <> 0 THEN last_poll_ms ELSE $2 END"
                          " FROM lazy WHERE id = $1 RETURNING poll_interval_s, poll_slowed",
                     "iiiiii", 0},
    /* store.h's lr_poll_find: the read of a poll and PST_LR_POLL in one UPDATE, of the
     * request only if it is the poll's: $1 the id, $2 the device code's hash, $3 the client,
     * $4 the DPoP key's thumbprint (NULL: none), $5 now, $6 the wait (exempt when at least the
     * request's own interval), $7 the slack, $8 the step, $9 the ceiling. The hash is compared
     * by the database, not in constant time: how long a comparison takes tells how many first
     * bytes of the stored hash the hash of a guess shares, and a hash tells nothing of the
     * device code; the thumbprint names a public key. A poll that matches nothing counts
     * nothing. The row comes back as LR_COLS, then the interval and the decision. */
    [PST_LR_POLL_FIND] = {LAZY "UPDATE login_requests SET"
                               " poll_slowed = ($6 < interval_s AND last_poll_ms <> 0"
                               " AND $5 - last_poll_ms < poll_interval_s::bigint * 1000 - $7),"
                               " poll_interval_s = CASE WHEN $6 < interval_s AND last_poll_ms <> 0"
                               " AND $5 - last_poll_ms < poll_interval_s::bigint * 1000 - $7"
                               " THEN GREATEST(poll_interval_s, LEAST(poll_interval_s + $8, $9))"
                               " ELSE poll_interval_s END,"
                               " last_poll_ms = CASE WHEN $6 < interval_s THEN $5"
                               " ELSE last_poll_ms END"
                               " FROM lazy WHERE id = $1 AND device_code_hash = $2"
                               " AND client_id = $3 AND (dpop_jkt = '' OR dpop_jkt = $4)"
                               " RETURNING " LR_COLS ", poll_interval_s, poll_slowed",
                          "ibttiiiii", 0},

    [PST_RL_HIT] = {LAZY "INSERT INTO rate_limits AS r (key, start_ms, window_ms, hits)"
                         " SELECT $1, $2, $3, 1 FROM lazy ON CONFLICT (key) DO UPDATE SET"
                         " hits = CASE WHEN $2 < r.start_ms + $3 THEN r.hits + 1 ELSE 1 END,"
                         " start_ms = CASE WHEN $2 < r.start_ms + $3 THEN r.start_ms ELSE $2 END,"
                         " window_ms = $3 RETURNING r.hits",
                    "tii", 0},
    [PST_RL_PEEK] = {"SELECT hits, start_ms FROM rate_limits WHERE key = $1", "t", 0},
    /* GCRA (rate_limits.c): start_ms holds the key's theoretical arrival time, hits stays 0.
     * $2 now, $3 the emission interval, $4 the window. The first row says whether the attempt
     * was taken; when it was not, its time is the arrival time the refusal left (read from
     * the statement's snapshot: for the retry hint only). */
    [PST_RL_TAKE] = {LAZY ", t AS (INSERT INTO rate_limits AS r (key, start_ms, window_ms, hits)"
                          " SELECT $1, $2 + $3, $4, 0 FROM lazy"
                          " ON CONFLICT (key) DO UPDATE SET"
                          " start_ms = GREATEST(r.start_ms, $2) + $3, window_ms = $4"
                          " WHERE GREATEST(r.start_ms, $2) + $3 - $2 <= $4 RETURNING r.start_ms)"
                          " SELECT true, start_ms FROM t UNION ALL"
                          " SELECT false, start_ms FROM rate_limits WHERE key = $1"
                          " AND NOT EXISTS (SELECT 1 FROM t)",
                     "tiii", 0},
    [PST_RL_GIVE] = {LAZY "UPDATE rate_limits SET start_ms = GREATEST(start_ms - $3, $2)"
                          " FROM lazy WHERE key = $1",
                     "tii", 0},
    /* store.h's ratelimit_first_hit: PST_RL_TAKE of $1 with limit 1 (an emission interval of
     * the whole window $4) and, only when it took its attempt, PST_RL_HIT of $2. No row: $1
     * was seen in the window, and nothing changed. */
    [PST_RL_FIRST_HIT] = {LAZY ", t AS (INSERT INTO rate_limits AS r (key, start_ms, window_ms,"
                               " hits) SELECT $1, $3 + $4, $4, 0 FROM lazy"
                               " ON CONFLICT (key) DO UPDATE SET"
                               " start_ms = GREATEST(r.start_ms, $3) + $4, window_ms = $4"
                               " WHERE GREATEST(r.start_ms, $3) + $4 - $3 <= $4 RETURNING 1),"
                               " h AS (INSERT INTO rate_limits AS r (key, start_ms, window_ms,"
                               " hits) SELECT $2, $3, $4, 1 FROM t ON CONFLICT (key) DO UPDATE SET"
                               " hits = CASE WHEN $3 < r.start_ms + $4 THEN r.hits + 1 ELSE 1 END,"
                               " start_ms = CASE WHEN $3 < r.start_ms + $4 THEN r.start_ms"
                               " ELSE $3 END, window_ms = $4 RETURNING r.hits)"
                               " SELECT hits FROM h",
                          "ttii", 0},
    /* One sweeper at a time across the nodes: the others skip (rate_limits.c). */
    [PST_SWEEP_LOCK] = {"SELECT pg_try_advisory_xact_lock($1::int, $2::int)", "ii", 0},
    /* $3 bounds the primary key (rate_limits.c): a range, not a scan of the whole table. */
    [PST_SWEEP_LR] = {"DELETE FROM login_requests WHERE id < $3 AND expires_ms < $1 - $2", "iii", 0},
    /* Requests that expired undecided, a minute after their expiry; $2 bounds the key. */
    [PST_SWEEP_LR_UNDECIDED] = {"DELETE FROM login_requests WHERE id < $2"
                                " AND expires_ms < $1 - 60000 AND state IN (0, 1, 5)",
                                "ii", 0},
    [PST_SWEEP_RL] = {"DELETE FROM rate_limits WHERE start_ms + window_ms < $1 - $2", "ii", 0},

    [PST_PASSKEY_INSERT] = {"INSERT INTO passkeys (account_id, cred_id, alg, pubkey, sign_count,"
                            " name, created_ms, last_used_ms) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                            " 0) RETURNING id",
                            "ibibiti", 0},
    [PST_PASSKEY_LIST] = {"SELECT " PASSKEY_COLS " FROM passkeys WHERE account_id = $1"
                          " ORDER BY created_ms, id LIMIT $2",
                          "ii", 0},
    [PST_PASSKEY_GET] = {"SELECT " PASSKEY_COLS " FROM passkeys WHERE cred_id = $1", "b", 0},
    /* The compare-and-set of store.h's passkey_use, and whether the passkey exists, in one
     * statement: a miss is a conflict only when the row is there. */
    [PST_PASSKEY_USE] = {"WITH u AS (UPDATE passkeys SET sign_count = $3, last_used_ms = $4"
                         " WHERE id = $1 AND sign_count = $2 RETURNING id)"
                         " SELECT (SELECT count(*) FROM u),"
                         " EXISTS (SELECT 1 FROM passkeys WHERE id = $1)",
                         "iiii", 0},
    [PST_PASSKEY_DELETE] = {"DELETE FROM passkeys WHERE id = $1 AND account_id = $2", "ii", 0},

    /* notice_add in one statement, lazy: the notice, and the account's notices older than the
     * horizon $11 deleted with their acknowledgements (ON DELETE CASCADE). Every node wakes
     * whoever waits for the account's notices: the change id is core.h's
     * qrl_notice_key(account_id), -(2^62 + account_id). */
    [PST_NOTICE_INSERT] = {LAZY ", p AS (DELETE FROM notices WHERE account_id = $2"
                                " AND created_ms < $11),"
                                " i AS (INSERT INTO notices (id, account_id, device_id, created_ms,"
                                " platform, kind, reason, screen_name, screen_kind, screen_address)"
                                " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM lazy"
                                " RETURNING account_id)"
                                " SELECT -(4611686018427387904 + account_id) FROM i",
                           "iiiititttti", NOTIFY},
    /* store.h's notice_list: $2 is the device asking. A blocked request (kind 2) is told to
     * every device of the account, its stopped phone too, revoked since or not; a new device
     * (kind 1) to the others while it is linked. */
    [PST_NOTICE_LIST] = {"SELECT " NOTICE_COLS NOTICE_FROM " WHERE n.account_id = $1"
                         " AND n.created_ms >= $3"
                         " AND (n.kind = 2 OR (n.device_id <> $2 AND d.revoked_ms = 0))"
                         " AND NOT EXISTS (SELECT 1 FROM notice_acks a"
                         " WHERE a.notice_id = n.id AND a.device_id = $2)"
                         " ORDER BY n.id DESC LIMIT $4",
                         "iiii", 0},
    [PST_NOTICE_GET] = {"SELECT " NOTICE_COLS NOTICE_FROM " WHERE n.id = $1 AND n.account_id = $2",
                        "ii", 0},
    /* The acknowledgement, and whether the account has the notice at all, in one statement;
     * a notice pruned by another node meanwhile fails the foreign key (notices.c). */
    [PST_NOTICE_ACK] = {LAZY ", n AS (SELECT id FROM notices WHERE id = $1 AND account_id = $2),"
                             " i AS (INSERT INTO notice_acks (notice_id, device_id, acked_ms)"
                             " SELECT n.id, $3, $4 FROM n, lazy ON CONFLICT DO NOTHING)"
                             " SELECT count(*) FROM n",
                        "iiii", 0},

    /* challenge_put (challenges.c), in one lazy transaction: the lock on device $1 (an
     * advisory lock keyed by the device id alone, apart from the two-key locks of
     * QRL__PG_LOCK_CLASS), then room for the new challenge (the device's expired ones go, and
     * its live ones but the $8 that expire last) and the challenge itself. */
    [PST_CHAL_LOCK] = {LAZY "SELECT pg_advisory_xact_lock($1) FROM lazy", "i", 0},
    [PST_CHAL_PUT] = {"WITH d AS (DELETE FROM webauthn_challenges WHERE device_id = $3"
                      " AND (expires_ms <= $7 OR hash NOT IN (SELECT hash FROM webauthn_challenges"
                      " WHERE device_id = $3 AND expires_ms > $7"
                      " ORDER BY expires_ms DESC, hash DESC LIMIT $8)))"
                      " INSERT INTO webauthn_challenges (hash, account_id, device_id, lr_id,"
                      " purpose, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
                      "biiiiiii", 0},
    /* One statement: of two takes racing for the row, the second waits for the first's
     * commit, finds the row gone and returns nothing. Durable (synchronous_commit on). */
    [PST_CHAL_TAKE] = {"DELETE FROM webauthn_challenges WHERE hash = $1"
                       " RETURNING account_id, device_id, lr_id, purpose, expires_ms",
                       "b", 0},
    [PST_SWEEP_CHAL] = {"DELETE FROM webauthn_challenges WHERE expires_ms <= $1", "i", 0},
};

/* --- logging and errors ------------------------------------------------------------------- */

void qrl__pg_log(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "qrlogin: postgres: %s\n", msg);
}

void qrl__pg_set_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (errbuf != NULL && errlen > 0)
        snprintf(errbuf, errlen, "postgres: %s", msg);
    else
        fprintf(stderr, "qrlogin: postgres: %s\n", msg);
}

/* One line: every run of newlines, tabs and spaces becomes one space; none at the ends. */
static void one_line(const char *in, char *out, size_t len)
{
    size_t n = 0;

    if (len == 0)
        return;
    for (; in != NULL && *in != '\0' && n + 1 < len; in++) {
        int space = *in == '\n' || *in == '\r' || *in == '\t' || *in == ' ';
        if (space && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = space ? ' ' : *in;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

void qrl__pg_conn_message(PGconn *pg, char *out, size_t len)
{
    one_line(pg != NULL ? PQerrorMessage(pg) : "out of memory", out, len);
    if (out[0] == '\0')
        snprintf(out, len, "connection failed");
}

static _Thread_local char last_sqlstate[6];

const char *qrl__pg_last_sqlstate(void)
{
    return last_sqlstate;
}

/* SQLSTATEs (classes by their first two characters) that mean "come back in a moment". */
static int transient(const char *state)
{
    static const char *const classes[] = {
        "08", /* connection exception */
        "40", /* transaction rollback: serialization failure, deadlock */
        "53", /* insufficient resources: disk full, out of memory, too many connections */
        "57", /* operator intervention: shutdown, cancel, statement timeout */
    };

    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strncmp(state, classes[i], 2) == 0)
            return 1;
    /* lock_not_available (lock_timeout); read_only_sql_transaction (a standby, in a failover) */
    return strcmp(state, "55P03") == 0 || strcmp(state, "25006") == 0;
}

qrl_err qrl__pg_fail(struct pg_conn *c, const PGresult *r, const char *what)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char msg[256];

    snprintf(last_sqlstate, sizeof last_sqlstate, "%s", state != NULL ? state : "");
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        c->broken = 1;
        qrl__pg_conn_message(c->pg, msg, sizeof msg);
        qrl__pg_log("%s: connection lost: %s", what, msg);
        return QRL_ERR_BUSY;
    }
    if (state != NULL && strcmp(state, "23505") == 0)
        return QRL_ERR_EXISTS;
    one_line(primary != NULL ? primary : PQerrorMessage(c->pg), msg, sizeof msg);
    qrl__pg_log("%s: %s (SQLSTATE %s)", what, msg, state != NULL ? state : "none");
    if (state == NULL) {
        /* No answer from the server at all: treat the connection as gone. */
        c->broken = 1;
        return QRL_ERR_BUSY;
    }
    if (strcmp(state, "53200") == 0)
        return QRL_ERR_NOMEM; /* out_of_memory, as SQLite's SQLITE_NOMEM */
    return transient(state) ? QRL_ERR_BUSY : QRL_ERR_STORE;
}

qrl_err qrl__pg_bad_row(const char *what)
{
    qrl__pg_log("%s: unexpected value in database", what);
    return QRL_ERR_STORE;
}

/* --- statements ---------------------------------------------------------------------------- */

/* Prepares statement `id` on `c` under the name "q<id>", with its declared parameter types. */
static qrl_err prepare(struct pg_conn *c, enum pg_stmt id)
{
    Oid types[PG_MAX_PARAMS];
    const char *t = stmt_def[id].types;
    int n = (int)strlen(t);
    char name[16];
    PGresult *r;
    qrl_err rc = QRL_OK;

    for (int i = 0; i < n; i++)
        types[i] = t[i] == 'i' ? 20 /* int8 */ : t[i] == 't' ? 25 /* text */ : 17 /* bytea */;
    snprintf(name, sizeof name, "q%d", (int)id);
    r = PQprepare(c->pg, name, stmt_def[id].sql, n, types);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = qrl__pg_fail(c, r, "prepare");
    else
        c->prepared[id] = 1;
    PQclear(r);
    return rc;
}

qrl_err qrl__pg_run(struct pg_conn *c, enum pg_stmt id, const struct pg_params *p, PGresult **out,
                    const char *what)
{
    char name[16];
    PGresult *r;
    ExecStatusType s;
    qrl_err rc;

    *out = NULL;
    /* A parameter list that does not match the statement is a bug in this folder. */
    if (p->n != (int)strlen(stmt_def[id].types)) {
        qrl__pg_log("%s: %d parameters for a statement of %d", what, p->n,
                    (int)strlen(stmt_def[id].types));
        return QRL_ERR_INTERNAL;
    }
    if (!c->prepared[id] && (rc = prepare(c, id)) != QRL_OK)
        return rc;
    snprintf(name, sizeof name, "q%d", (int)id);
    r = PQexecPrepared(c->pg, name, p->n, p->v, p->len, p->fmt, 1);
    s = PQresultStatus(r);
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
        if (stmt_def[id].notify)
            for (int i = 0; i < PQntuples(r); i++)
                qrl__pg_changed(c, qrl__pg_col_i64(r, i, 0));
        *out = r;
        return QRL_OK;
    }
    rc = qrl__pg_fail(c, r, what);
    PQclear(r);
    return rc;
}

qrl_err qrl__pg_exec(struct pg_conn *c, enum pg_stmt id, const struct pg_params *p, int64_t *rows,
                     const char *what)
{
    PGresult *r;
    qrl_err rc = qrl__pg_run(c, id, p, &r, what);

    if (rc != QRL_OK)
        return rc;
    if (rows != NULL)
        *rows =
            PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return QRL_OK;
}

/* --- transactions -------------------------------------------------------------------------- */

/* A command of the simple protocol that returns no rows; `ok_status` is the command tag it
 * must answer with (NULL: any). */
static qrl_err simple(struct pg_conn *c, const char *sql, const char *ok_status, const char *what)
{
    PGresult *r = PQexec(c->pg, sql);
    qrl_err rc = QRL_OK;

    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = qrl__pg_fail(c, r, what);
    else if (ok_status != NULL && strcmp(PQcmdStatus(r), ok_status) != 0) {
        /* COMMIT of a transaction that failed answers ROLLBACK. */
        qrl__pg_log("%s: the server answered %s", what, PQcmdStatus(r));
        rc = QRL_ERR_STORE;
    }
    PQclear(r);
    return rc;
}

qrl_err qrl__pg_begin(struct pg_conn *c)
{
    return simple(c, "BEGIN", NULL, "begin");
}

qrl_err qrl__pg_lazy(struct pg_conn *c)
{
    return simple(c, "SET LOCAL synchronous_commit = off", NULL, "lazy commit");
}

qrl_err qrl__pg_end(struct pg_conn *c, int commit)
{
    qrl_err rc = QRL_OK;

    if (c->broken) {
        c->nnotes = c->notes_lost = 0;
        return QRL_ERR_BUSY; /* the server rolls back what did not commit */
    }
    if (commit)
        rc = simple(c, "COMMIT", "COMMIT", "commit");
    if ((!commit || rc != QRL_OK) && !c->broken && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        (void)simple(c, "ROLLBACK", NULL, "rollback");
    /* What the transaction changed is told to every node once it has committed, and only
     * then. A COMMIT whose answer was lost may have committed all the same: other nodes then
     * learn of it at their next read (notify.c). */
    if (commit && rc == QRL_OK && (c->nnotes > 0 || c->notes_lost)) {
        static const int64_t anything = 0;
        if (c->notes_lost)
            qrl__pg_notify_post(c, &anything, 1);
        else
            qrl__pg_notify_post(c, c->notes, (size_t)c->nnotes);
    }
    c->nnotes = c->notes_lost = 0;
    return rc;
}

/* --- binary columns ------------------------------------------------------------------------ */

int64_t qrl__pg_col_i64(const PGresult *r, int row, int col)
{
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    uint64_t v = 0;

    if (PQgetisnull(r, row, col))
        return 0;
    switch (PQgetlength(r, row, col)) {
    case 8:
        memcpy(&v, p, 8);
        return (int64_t)be64toh(v);
    case 4: {
        uint32_t w;
        memcpy(&w, p, 4);
        return (int32_t)be32toh(w);
    }
    case 2: {
        uint16_t h;
        memcpy(&h, p, 2);
        return (int16_t)be16toh(h);
    }
    case 1:
        return p[0] != 0; /* boolean */
    default:
        return 0;
    }
}

int qrl__pg_col_text(const PGresult *r, int row, int col, char *dst, size_t cap)
{
    size_t n = (size_t)PQgetlength(r, row, col);

    if (PQgetisnull(r, row, col) || n >= cap)
        return -1;
    memcpy(dst, PQgetvalue(r, row, col), n);
    dst[n] = '\0';
    return 0;
}

int qrl__pg_col_hash(const PGresult *r, int row, int col, qrl_hash *h)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != QRL_HASH_BYTES)
        return -1;
    memcpy(h->b, PQgetvalue(r, row, col), QRL_HASH_BYTES);
    return 0;
}

/* --- row decoders (column order: the *_COLS lists) ----------------------------------------- */

qrl_err qrl__pg_read_account(const PGresult *r, int row, int b, qrl_account_rec *out)
{
    memset(out, 0, sizeof *out);
    out->id = qrl__pg_col_i64(r, row, b);
    if (qrl__pg_col_text(r, row, b + 1, out->username, sizeof out->username) != 0 ||
        qrl__pg_col_text(r, row, b + 2, out->display_name, sizeof out->display_name) != 0 ||
        qrl__pg_col_text(r, row, b + 3, out->pw_hash, sizeof out->pw_hash) != 0)
        return qrl__pg_bad_row("account");
    out->created_ms = qrl__pg_col_i64(r, row, b + 4);
    out->disabled = qrl__pg_col_i64(r, row, b + 5) != 0;
    return QRL_OK;
}

qrl_err qrl__pg_read_device(const PGresult *r, int row, int b, qrl_device_rec *out)
{
    memset(out, 0, sizeof *out);
    out->id = qrl__pg_col_i64(r, row, b);
    out->account_id = qrl__pg_col_i64(r, row, b + 1);
    if (qrl__pg_col_text(r, row, b + 2, out->name, sizeof out->name) != 0 ||
        qrl__pg_col_text(r, row, b + 3, out->kind, sizeof out->kind) != 0 ||
        qrl__pg_col_text(r, row, b + 4, out->address, sizeof out->address) != 0)
        return qrl__pg_bad_row("device");
    out->created_ms = qrl__pg_col_i64(r, row, b + 5);
    out->last_seen_ms = qrl__pg_col_i64(r, row, b + 6);
    out->revoked_ms = qrl__pg_col_i64(r, row, b + 7);
    if (!PQgetisnull(r, row, b + 8)) {
        if (PQgetlength(r, row, b + 8) != QRL_PUBKEY_BYTES)
            return qrl__pg_bad_row("device");
        memcpy(out->pubkey, PQgetvalue(r, row, b + 8), QRL_PUBKEY_BYTES);
        out->has_pubkey = 1;
    }
    return QRL_OK;
}

qrl_err qrl__pg_read_token(const PGresult *r, int row, qrl_token_rec *out)
{
    int64_t kind;

    memset(out, 0, sizeof *out);
    kind = qrl__pg_col_i64(r, row, 1);
    if (qrl__pg_col_hash(r, row, 0, &out->hash) != 0 || kind < QRL_TOKEN_ACCESS ||
        kind > QRL_TOKEN_SESSION ||
        qrl__pg_col_text(r, row, 7, out->client_id, sizeof out->client_id) != 0 ||
        qrl__pg_col_text(r, row, 8, out->scope, sizeof out->scope) != 0)
        return qrl__pg_bad_row("token");
    out->kind = (qrl_token_kind)kind;
    out->device_id = qrl__pg_col_i64(r, row, 2);
    out->created_ms = qrl__pg_col_i64(r, row, 3);
    out->expires_ms = qrl__pg_col_i64(r, row, 4);
    out->used_ms = qrl__pg_col_i64(r, row, 5);
    out->revoked_ms = qrl__pg_col_i64(r, row, 6);
    out->account_id = qrl__pg_col_i64(r, row, 9);
    out->device_revoked = (int)qrl__pg_col_i64(r, row, 10);
    out->account_disabled = (int)qrl__pg_col_i64(r, row, 11);
    return QRL_OK;
}

qrl_err qrl__pg_read_lr(const PGresult *r, int row, qrl_lr_rec *out)
{
    int64_t state;

    memset(out, 0, sizeof *out);
    state = qrl__pg_col_i64(r, row, 12);
    if (qrl__pg_col_hash(r, row, 1, &out->device_code_hash) != 0 ||
        qrl__pg_col_hash(r, row, 2, &out->scan_hash) != 0 ||
        qrl__pg_col_text(r, row, 3, out->user_code, sizeof out->user_code) != 0 ||
        qrl__pg_col_text(r, row, 4, out->client_id, sizeof out->client_id) != 0 ||
        qrl__pg_col_text(r, row, 5, out->scope, sizeof out->scope) != 0 ||
        qrl__pg_col_text(r, row, 6, out->device_name, sizeof out->device_name) != 0 ||
        qrl__pg_col_text(r, row, 7, out->device_kind, sizeof out->device_kind) != 0 ||
        qrl__pg_col_text(r, row, 8, out->address, sizeof out->address) != 0 ||
        qrl__pg_col_text(r, row, 18, out->nonce, sizeof out->nonce) != 0 ||
        qrl__pg_col_text(r, row, 19, out->device_platform, sizeof out->device_platform) != 0 ||
        qrl__pg_col_text(r, row, 20, out->dpop_jkt, sizeof out->dpop_jkt) != 0 ||
        state < QRL_LR_PENDING || state > QRL_LR_EXPIRED)
        return qrl__pg_bad_row("login request");
    out->id = qrl__pg_col_i64(r, row, 0);
    out->created_ms = qrl__pg_col_i64(r, row, 9);
    out->expires_ms = qrl__pg_col_i64(r, row, 10);
    out->interval_s = (int)qrl__pg_col_i64(r, row, 11);
    out->state = (qrl_lr_state)state;
    out->updated_ms = qrl__pg_col_i64(r, row, 13);
    out->claimed_device_id = qrl__pg_col_i64(r, row, 14);
    out->account_id = qrl__pg_col_i64(r, row, 15);
    out->approving_device_id = qrl__pg_col_i64(r, row, 16);
    out->redeemed_device_id = qrl__pg_col_i64(r, row, 17);
    return QRL_OK;
}

qrl_err qrl__pg_read_notice(const PGresult *r, int row, qrl_notice_rec *out)
{
    int64_t kind;

    memset(out, 0, sizeof *out);
    out->id = qrl__pg_col_i64(r, row, 0);
    out->account_id = qrl__pg_col_i64(r, row, 1);
    out->device_id = qrl__pg_col_i64(r, row, 2);
    out->created_ms = qrl__pg_col_i64(r, row, 3);
    kind = qrl__pg_col_i64(r, row, 5);
    if (qrl__pg_col_text(r, row, 4, out->platform, sizeof out->platform) != 0 ||
        (kind != QRL_NOTICE_DEVICE_LINKED && kind != QRL_NOTICE_REQUEST_BLOCKED) ||
        qrl__pg_col_text(r, row, 6, out->reason, sizeof out->reason) != 0 ||
        qrl__pg_col_text(r, row, 7, out->screen_name, sizeof out->screen_name) != 0 ||
        qrl__pg_col_text(r, row, 8, out->screen_kind, sizeof out->screen_kind) != 0 ||
        qrl__pg_col_text(r, row, 9, out->screen_address, sizeof out->screen_address) != 0)
        return qrl__pg_bad_row("notice");
    out->kind = (qrl_notice_kind)kind;
    return qrl__pg_read_device(r, row, NOTICE_DEVICE_COL, &out->device);
}

qrl_err qrl__pg_read_passkey(const PGresult *r, int row, qrl_passkey_rec *out)
{
    int cred_len = PQgetlength(r, row, 2), pk_len = PQgetlength(r, row, 4);
    int64_t count = qrl__pg_col_i64(r, row, 5);

    memset(out, 0, sizeof *out);
    if (PQgetisnull(r, row, 2) || PQgetisnull(r, row, 4) || cred_len < 1 ||
        (size_t)cred_len > sizeof out->cred_id || pk_len < 1 ||
        (size_t)pk_len > sizeof out->pubkey || count < 0 || count > UINT32_MAX ||
        qrl__pg_col_text(r, row, 6, out->name, sizeof out->name) != 0)
        return qrl__pg_bad_row("passkey");
    out->id = qrl__pg_col_i64(r, row, 0);
    out->account_id = qrl__pg_col_i64(r, row, 1);
    memcpy(out->cred_id, PQgetvalue(r, row, 2), (size_t)cred_len);
    out->cred_id_len = (size_t)cred_len;
    out->alg = (int)qrl__pg_col_i64(r, row, 3);
    memcpy(out->pubkey, PQgetvalue(r, row, 4), (size_t)pk_len);
    out->pubkey_len = (size_t)pk_len;
    out->sign_count = (uint32_t)count;
    out->created_ms = qrl__pg_col_i64(r, row, 7);
    out->last_used_ms = qrl__pg_col_i64(r, row, 8);
    return QRL_OK;
}
