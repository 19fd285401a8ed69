/* SPDX-License-Identifier: MIT */
/*
 * Passkeys in the SQLite store: add, list an account's, get by credential id, record a use
 * (the signature counter), delete.
 *
 * A credential id names one credential wherever it is registered, hence the unique index that
 * makes a second registration fail with QRL_ERR_EXISTS; assertions look passkeys up by it.
 * passkey_use is a compare-and-set on the signature counter (W3C WebAuthn Level 2 section
 * 6.1.1): the UPDATE matches only the counter the caller read, so of two assertions racing
 * with the same counter one wins and the other hears QRL_ERR_CONFLICT. It is durable: a counter
 * that went back after a power loss would accept a replayed assertion's counter once more.
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

static void bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n, int *brc)
{
    int rc = sqlite3_bind_blob(s, i, p, (int)n, SQLITE_STATIC);
    if (*brc == SQLITE_OK)
        *brc = rc;
}

qrl_err qrl__sqlite_passkey_add_w(qrl_store *st, qrl_passkey_rec *pk)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (pk == NULL || pk->cred_id_len == 0 || pk->cred_id_len > sizeof pk->cred_id ||
        pk->pubkey_len == 0 || pk->pubkey_len > sizeof pk->pubkey ||
        !str_fits(pk->name, sizeof pk->name))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_PASSKEY_INSERT, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, pk->account_id, &brc);
    bind_blob(s, 2, pk->cred_id, pk->cred_id_len, &brc);
    bind_i64(s, 3, pk->alg, &brc);
    bind_blob(s, 4, pk->pubkey, pk->pubkey_len, &brc);
    bind_i64(s, 5, pk->sign_count, &brc);
    bind_text(s, 6, pk->name, &brc);
    bind_i64(s, 7, pk->created_ms, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "passkey_add");
    brc = sqlite3_step(s);
    sqlite3_reset(s);
    /* No such account: the caller's mistake, said as for the other methods keyed by account. */
    if (brc == SQLITE_CONSTRAINT_FOREIGNKEY)
        return QRL_ERR_NOT_FOUND;
    if (brc != SQLITE_DONE)
        return qrl__sqlite_db_fail(c, brc, "passkey_add");
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
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_PASSKEY_LIST, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, account_id, &brc);
    bind_i64(s, 2, limit_of(max), &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "passkey_list");
    while ((src = sqlite3_step(s)) == SQLITE_ROW && k < max) {
        if ((rc = qrl__sqlite_read_passkey(s, &out[k])) != QRL_OK)
            break;
        k++;
    }
    if (rc == QRL_OK && src != SQLITE_DONE && src != SQLITE_ROW)
        rc = qrl__sqlite_db_fail(c, src, "passkey_list");
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
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_PASSKEY_GET, &s)) != QRL_OK)
        return rc;
    bind_blob(s, 1, cred_id, cred_id_len, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "passkey_get");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        rc = qrl__sqlite_read_passkey(s, out);
    else
        rc = src == SQLITE_DONE ? QRL_ERR_NOT_FOUND : qrl__sqlite_db_fail(c, src, "passkey_get");
    sqlite3_reset(s);
    return rc;
}

READ_METHOD(passkey_get,
            (qrl_store * st, const unsigned char *cred_id, size_t cred_id_len,
             qrl_passkey_rec *out),
            (st, cred_id, cred_id_len, out))

qrl_err qrl__sqlite_passkey_use_w(qrl_store *st, int64_t id, uint32_t old_count, uint32_t new_count,
                                  int64_t now_ms)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    qrl_err rc;

    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_PASSKEY_USE, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, old_count, &brc);
    bind_i64(s, 3, new_count, &brc);
    bind_i64(s, 4, now_ms, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "passkey_use");
    if ((rc = qrl__sqlite_stmt_run(c, s, "passkey_use")) != QRL_OK || sqlite3_changes(c->db) == 1)
        return rc;
    /* No row changed. This runs on the writer, which alone writes, so the row read now is the
     * one the UPDATE saw: it tells a lost race (or a stale counter) from a missing passkey. */
    if ((rc = stmt_get(c, ST_PASSKEY_EXISTS, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "passkey_use");
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src == SQLITE_ROW)
        return QRL_ERR_CONFLICT;
    return src == SQLITE_DONE ? QRL_ERR_NOT_FOUND : qrl__sqlite_db_fail(c, src, "passkey_use");
}

qrl_err qrl__sqlite_passkey_delete_w(qrl_store *st, int64_t account_id, int64_t id)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_PASSKEY_DELETE, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, account_id, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "passkey_delete");
    rc = qrl__sqlite_stmt_run(c, s, "passkey_delete");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}
