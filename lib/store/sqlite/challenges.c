/* SPDX-License-Identifier: MIT */
/*
 * WebAuthn challenges in the SQLite store (store.h, version 11): put one, take one.
 *
 * A challenge is a row of `webauthn_challenges` keyed by the hash of the challenge; the store
 * never sees the challenge itself. Both methods are writes, so both run on the writer thread,
 * one after another: that alone makes a take atomic (of two takes of one hash the second finds
 * no row) and keeps the bound of challenge_put exact. The take is one statement, DELETE ...
 * RETURNING, so the row is gone in the same step that reads it. The put deletes the device's
 * expired challenges and its oldest live ones beyond the bound, then inserts, as one unit.
 *
 * A put is lazy (a challenge lost to a power loss makes the browser ask for another), a take
 * durable (a challenge that came back after a power loss would let whatever was presented with
 * it be verified once more). An expired challenge is deleted by the take that finds it, and
 * otherwise by the sweep (rate_limits.c).
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

qrl_err qrl__sqlite_challenge_put_w(qrl_store *st, const qrl_challenge_rec *ch, int64_t now_ms)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (ch == NULL || ch->account_id <= 0 || ch->device_id <= 0 || ch->lr_id < 0 ||
        ch->purpose <= 0 || ch->expires_ms <= now_ms)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK || (rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    if ((rc = stmt_get(c, ST_CHAL_TRIM, &s)) != QRL_OK)
        goto out;
    bind_i64(s, 1, ch->device_id, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_i64(s, 3, QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE - 1, &brc);
    rc = brc != SQLITE_OK ? qrl__sqlite_db_fail(c, brc, "challenge_put")
                          : qrl__sqlite_stmt_run(c, s, "challenge_put");
    if (rc != QRL_OK || (rc = stmt_get(c, ST_CHAL_INSERT, &s)) != QRL_OK)
        goto out;
    bind_hash(s, 1, &ch->hash, &brc);
    bind_i64(s, 2, ch->account_id, &brc);
    bind_i64(s, 3, ch->device_id, &brc);
    bind_i64(s, 4, ch->lr_id, &brc);
    bind_i64(s, 5, ch->purpose, &brc);
    bind_i64(s, 6, ch->expires_ms, &brc);
    rc = brc != SQLITE_OK ? qrl__sqlite_db_fail(c, brc, "challenge_put")
                          : qrl__sqlite_stmt_run(c, s, "challenge_put");
out:
    if (rc != QRL_OK) {
        qrl__sqlite_tx_end(c, 0);
        return rc;
    }
    return qrl__sqlite_tx_end(c, 1);
}

qrl_err qrl__sqlite_challenge_take_w(qrl_store *st, const qrl_hash *h, int64_t now_ms,
                                     qrl_challenge_rec *out)
{
    qrl_challenge_rec got;
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src, found = 0;
    qrl_err rc;

    if (h == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_CHAL_TAKE, &s)) != QRL_OK)
        return rc;
    bind_hash(s, 1, h, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "challenge_take");
    memset(&got, 0, sizeof got);
    /* Step to SQLITE_DONE: with RETURNING the statement ends only then. The hash is the
     * primary key: one row at most. */
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t purpose = sqlite3_column_int64(s, 3);

        got.hash = *h;
        got.account_id = sqlite3_column_int64(s, 0);
        got.device_id = sqlite3_column_int64(s, 1);
        got.lr_id = sqlite3_column_int64(s, 2);
        got.purpose = purpose > 0 && purpose <= INT32_MAX ? (int)purpose : 0;
        got.expires_ms = sqlite3_column_int64(s, 4);
        found = 1;
    }
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return qrl__sqlite_db_fail(c, src, "challenge_take");
    if (!found || got.expires_ms <= now_ms)
        return QRL_ERR_NOT_FOUND;
    if (got.purpose == 0)
        return qrl__sqlite_bad_row("challenge_take");
    if (out != NULL)
        *out = got;
    return QRL_OK;
}
